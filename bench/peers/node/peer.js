// One Node.js peer measurement for bench/run; prints ops per second.
// node peer.js cache_get|cache_set|ratelimit|lock|jobs REDIS_URL OPS CONCURRENCY
// ioredis with enableAutoPipelining (its documented throughput setting), one connection;
// rate-limiter-flexible's RateLimiterRedis on it; redlock (v5) on it. jobs: BullMQ, a Queue
// and a Worker with `concurrency: CONCURRENCY` in this process (BullMQ's own connections,
// maxRetriesPerRequest: null as its docs require), removeOnComplete keeping the last 1000
// like redkit's default retention; CONCURRENCY producers add one job per call while the
// worker runs; the clock stops at the last "completed" event.
const Redis = require("ioredis");
const { RateLimiterRedis } = require("rate-limiter-flexible");
const Redlock = require("redlock").default;

async function jobs(url, ops, conc) {
  const { Queue, Worker } = require("bullmq");
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const name = `bullmq-bench-${process.pid}`;
  const queue = new Queue(name, { connection, defaultJobOptions: { removeOnComplete: 1000 } });
  const perTask = Math.ceil(ops / conc), total = perTask * conc;
  let completed = 0, finish;
  const allDone = new Promise((resolve) => (finish = resolve));
  const worker = new Worker(name, async () => {}, { connection, concurrency: conc });
  worker.on("completed", () => { if (++completed === total) finish(); });
  await worker.waitUntilReady();
  const start = process.hrtime.bigint();
  await Promise.all([...Array(conc).keys()].map(async () => {
    for (let i = 0; i < perTask; i++) await queue.add("noop", { i });
  }));
  await allDone;
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(Math.round(total / secs));
  process.exit(0);
}

async function main() {
  const [scenario, url, opsArg, concArg] = process.argv.slice(2);
  const ops = Number(opsArg), conc = Number(concArg);
  if (scenario === "jobs") return jobs(url, ops, conc);
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
