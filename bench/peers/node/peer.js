// One Node.js peer measurement for bench/run; prints ops per second.
// node peer.js cache_get|cache_set|ratelimit|lock REDIS_URL OPS CONCURRENCY
// ioredis with enableAutoPipelining (its documented throughput setting), one connection;
// rate-limiter-flexible's RateLimiterRedis on it; redlock (v5) on it.
const Redis = require("ioredis");
const { RateLimiterRedis } = require("rate-limiter-flexible");
const Redlock = require("redlock").default;

async function main() {
  const [scenario, url, opsArg, concArg] = process.argv.slice(2);
  const ops = Number(opsArg), conc = Number(concArg);
  const redis = new Redis(url, { enableAutoPipelining: true });
  const value = "x".repeat(100);
  const limiter = new RateLimiterRedis({ storeClient: redis, points: 1e9, duration: 3600, keyPrefix: "peer-rl" });
  const redlock = new Redlock([redis], { retryCount: 0 });
  if (scenario === "cache_get") for (let k = 0; k < 1000; k++) await redis.set(`peer:k${k}`, value);
  const perTask = Math.ceil(ops / conc);
  const start = process.hrtime.bigint();
  await Promise.all([...Array(conc).keys()].map(async (t) => {
    for (let i = 0; i < perTask; i++) {
      const key = `peer:k${(t * perTask + i) % 1000}`;
      if (scenario === "cache_get") { if ((await redis.get(key)) === null) throw new Error("miss"); }
      else if (scenario === "cache_set") await redis.set(key, value, "EX", 300);
      else if (scenario === "ratelimit") await limiter.consume(`client:${t}`);
      else if (scenario === "lock") { const lock = await redlock.acquire([`peer-lock:${t}:${i % 1000}`], 10000); await lock.release(); }
      else throw new Error(`unknown scenario ${scenario}`);
    }
  }));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(Math.round((perTask * conc) / secs));
  redis.disconnect();
}
main().catch((e) => { console.error(e); process.exit(1); });
