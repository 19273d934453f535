// The Socket.IO peer for bench/run's pub/sub fan-out: one Socket.IO server on PORT with the
// Redis adapter on REDIS_URL (run two, on one Redis, for two instances).
// node socketio-server.js PORT REDIS_URL
// Every client joins room "bench" on connect. `POST /publish {"data": any JSON}` emits the data
// to the room as event "m" — on this server's clients directly, on the other servers' through
// the adapter's Redis PUBLISH — and answers 200: the same shape as redkit's
// `POST /v1/channels/{ch}/publish`. `GET /ready` answers 200 (the server listens only once the
// adapter's subscription to Redis is in place).
const http = require("http");
const Redis = require("ioredis");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");

async function main() {
  const [port, url] = process.argv.slice(2);
  const pubClient = new Redis(url);
  const subClient = pubClient.duplicate();
  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/ready") return res.end("ok");
    if (req.method !== "POST" || req.url !== "/publish") { res.statusCode = 404; return res.end(); }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let body;
      try { body = JSON.parse(Buffer.concat(chunks)); } catch { res.statusCode = 400; return res.end(); }
      io.to("bench").emit("m", body.data);
      res.setHeader("content-type", "application/json");
      res.end("{}");
    });
  });
  const io = new Server(server, { adapter: createAdapter(pubClient, subClient) });
  io.on("connection", (socket) => socket.join("bench"));
  // The adapter sends PSUBSCRIBE without waiting for it; a PING on the same connection is
  // answered after it, so publications from the other server are not missed once we listen.
  await subClient.ping();
  server.listen(Number(port), "127.0.0.1");
}
main().catch((e) => { console.error(e); process.exit(1); });
