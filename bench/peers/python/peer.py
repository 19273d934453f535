"""One Python peer measurement for bench/run; prints ops per second.

python peer.py cache_get|cache_set|ratelimit_moving|ratelimit_fixed|lock REDIS_URL OPS CONCURRENCY

redis-py's asyncio client with a connection pool of CONCURRENCY connections (its documented
way to run concurrent commands); `limits` with its async Redis storage and the moving- or
fixed-window strategy; python-redis-lock (synchronous, so CONCURRENCY threads, each with
its own connection from a shared pool).
"""

import asyncio
import sys
import threading
import time


async def run_async(scenario, url, ops, conc):
    import redis.asyncio as aredis

    per_task = -(-ops // conc)
    value = "x" * 100
    if scenario.startswith("ratelimit"):
        from limits import RateLimitItemPerHour
        from limits.aio import storage, strategies

        store = storage.RedisStorage("async+" + url)
        cls = strategies.MovingWindowRateLimiter if scenario == "ratelimit_moving" else strategies.FixedWindowRateLimiter
        limiter = cls(store)
        item = RateLimitItemPerHour(1_000_000_000)

        async def task(t):
            for _ in range(per_task):
                assert await limiter.hit(item, scenario, str(t))
    else:
        r = aredis.Redis.from_url(url, max_connections=conc)
        if scenario == "cache_get":
            for k in range(1000):
                await r.set(f"peer:k{k}", value)

        async def task(t):
            for i in range(per_task):
                key = f"peer:k{(t * per_task + i) % 1000}"
                if scenario == "cache_get":
                    assert await r.get(key) is not None
                else:
                    await r.set(key, value, ex=300)

    start = time.perf_counter()
    await asyncio.gather(*(task(t) for t in range(conc)))
    return per_task * conc / (time.perf_counter() - start)


def run_lock(url, ops, conc):
    import redis
    import redis_lock

    pool = redis.ConnectionPool.from_url(url, max_connections=conc)
    per_task = -(-ops // conc)

    def task(t):
        conn = redis.Redis(connection_pool=pool)
        for i in range(per_task):
            lock = redis_lock.Lock(conn, f"peer-lock:{t}:{i % 1000}", expire=10)
            assert lock.acquire(blocking=False)
            lock.release()

    threads = [threading.Thread(target=task, args=(t,)) for t in range(conc)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return per_task * conc / (time.perf_counter() - start)


def main():
    scenario, url, ops, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rate = run_lock(url, ops, conc) if scenario == "lock" else asyncio.run(run_async(scenario, url, ops, conc))
    print(round(rate))


if __name__ == "__main__":
    main()
