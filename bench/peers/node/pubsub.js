// The pub/sub fan-out driver for bench/run, for both sides of the scenario.
// node pubsub.js redkit|socket.io URL_A URL_B SUBSCRIBERS MESSAGES
// Opens SUBSCRIBERS WebSocket clients, half on server A and half on server B (redkit: `ws` to
// /v1/ws with a subscribe op for channel "bench"; socket.io: socket.io-client, WebSocket
// transport only, one connection per client, joined to room "bench" by the server), waits
// until every one is subscribed, then publishes MESSAGES messages to A over one HTTP
// keep-alive connection, one at a time (each awaits its answer). Every delivery's latency is
// its receive time minus the publish time carried in the message (one process, one clock).
// Last line: "<deliveries/s> <p50 ms> <p99 ms>", deliveries/s = SUBSCRIBERS × MESSAGES ÷ (last
// delivery − first publish). Exits 1 if a subscriber misses a message, gets one out of order,
// is disconnected, or the deliveries do not all arrive in time.
const http = require("http");
const WebSocket = require("ws");
const { io } = require("socket.io-client");

const SETUP_TIMEOUT_MS = 60000;   // 1,000 connections on a busy 2-core machine take a few seconds
const DRAIN_TIMEOUT_MS = 30000;   // after the last publish is answered
const OPEN_BATCH = 100;           // connections opened at once, so accept queues never overflow

const now = () => Number(process.hrtime.bigint()) / 1e6;
const fail = (message) => { console.error(`pubsub.js: ${message}`); process.exit(1); };

// One subscriber; resolves once subscribed. `deliver(data)` is called for each message.
function subscribe(side, base, deliver, lost) {
  return new Promise((resolve, reject) => {
    if (side === "redkit") {
      const ws = new WebSocket(`${base.replace(/^http/, "ws")}/v1/ws`);
      ws.on("open", () => ws.send(JSON.stringify({ op: "subscribe", channel: "bench" })));
      ws.on("message", (raw) => {
        const frame = JSON.parse(raw);
        if (frame.type === "publication") deliver(frame.data);
        else if (frame.type === "subscribed") resolve();
        else if (frame.type === "error") lost(`error frame ${raw}`);
      });
      ws.on("error", reject);
      ws.on("close", (code, reason) => lost(`closed ${code} ${reason}`));
    } else if (side === "socket.io") {
      // forceNew: without it socket.io-client multiplexes every client to one URL on one connection.
      const socket = io(base, { transports: ["websocket"], forceNew: true, reconnection: false });
      socket.on("m", deliver);
      socket.on("connect", resolve);
      socket.on("connect_error", reject);
      socket.on("disconnect", (reason) => lost(`disconnected: ${reason}`));
    } else reject(new Error(`unknown side ${side}`));
  });
}

// POST one JSON body on the keep-alive agent; resolves when answered 200.
function post(agent, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`${url} answered ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

async function main() {
  const [side, urlA, urlB, subsArg, msgsArg] = process.argv.slice(2);
  const subscribers = Number(subsArg), messages = Number(msgsArg);
  const total = subscribers * messages;
  const latencies = new Float64Array(total);
  let delivered = 0, lastDelivery = 0, running = false, allDelivered;
  const done = new Promise((resolve) => (allDelivered = resolve));

  const setupTimer = setTimeout(() => fail(`subscribers not all subscribed within ${SETUP_TIMEOUT_MS} ms`), SETUP_TIMEOUT_MS);
  const next = new Int32Array(subscribers);   // the `i` each subscriber expects next
  for (let start = 0; start < subscribers; start += OPEN_BATCH) {
    const batch = [];
    for (let s = start; s < Math.min(start + OPEN_BATCH, subscribers); s++) {
      const deliver = (data) => {
        const t = now();
        if (data.i !== next[s]) fail(`subscriber ${s} expected message ${next[s]}, got ${data.i}`);
        next[s]++;
        latencies[delivered++] = t - data.t;
        lastDelivery = t;
        if (delivered === total) allDelivered();
      };
      const lost = (why) => { if (running) fail(`subscriber ${s} lost its connection: ${why}`); };
      batch.push(subscribe(side, s % 2 === 0 ? urlA : urlB, deliver, lost));
    }
    await Promise.all(batch);
  }
  clearTimeout(setupTimer);
  running = true;

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const publishUrl = side === "redkit" ? `${urlA}/v1/channels/bench/publish` : `${urlA}/publish`;
  const pad = "x".repeat(100);
  const firstPublish = now();
  for (let i = 0; i < messages; i++) await post(agent, publishUrl, { data: { t: now(), i, pad } });
  const drainTimer = setTimeout(() => {
    const short = [...next].filter((n) => n < messages).length;
    fail(`${total - delivered} of ${total} deliveries missing ${DRAIN_TIMEOUT_MS} ms after the last publish (${short} subscribers short)`);
  }, DRAIN_TIMEOUT_MS);
  await done;
  clearTimeout(drainTimer);
  running = false;

  latencies.sort();
  const pct = (p) => latencies[Math.min(total - 1, Math.floor(total * p))];
  const rate = total / ((lastDelivery - firstPublish) / 1000);
  console.log(`${Math.round(rate)} ${pct(0.5).toFixed(2)} ${pct(0.99).toFixed(2)}`);
  process.exit(0);
}
main().catch((e) => fail(e.stack || e));
