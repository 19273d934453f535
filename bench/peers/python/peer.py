"""One Python peer measurement for bench/run; prints ops per second.

python peer.py cache_get|cache_set|ratelimit_moving|ratelimit_fixed|lock|jobs REDIS_URL OPS CONCURRENCY

redis-py's asyncio client with a connection pool of CONCURRENCY connections (its documented
way to run concurrent commands); `limits` with its async Redis storage and the moving- or
fixed-window strategy; python-redis-lock (synchronous, so CONCURRENCY threads, each with
its own connection from a shared pool); RQ (jobs: `rq worker-pool` with CONCURRENCY
`SimpleWorker` processes — RQ's concurrency is processes, and SimpleWorker runs each job in
the worker process instead of forking a work horse per job — fed by CONCURRENCY threads that
enqueue one job per call; the clock stops when the last job is in the finished registry).
"""

import asyncio
import os
import signal
import subprocess
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


def noop():
    """The job RQ's workers run (imported by them as `peer.noop`)."""


def run_jobs(url, ops, conc):
    import redis
    from rq import Queue, Worker

    conn = redis.Redis.from_url(url)
    name = f"rq-bench-{os.getpid()}"
    queue = Queue(name, connection=conn)
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    here = os.path.dirname(os.path.abspath(__file__))
    pool = subprocess.Popen(
        [rq, "worker-pool", "-q", "-n", str(conc), "-w", "rq.worker.SimpleWorker", "-u", url, "-P", here, name],
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the whole pool can be stopped
    )
    try:
        while Worker.count(queue=queue) < conc:  # the clock starts once every worker listens
            time.sleep(0.01)
        per_task = -(-ops // conc)
        total = per_task * conc

        def produce():
            for _ in range(per_task):
                queue.enqueue("peer.noop")

        threads = [threading.Thread(target=produce) for _ in range(conc)]
        start = time.perf_counter()
        for th in threads:
            th.start()
        while queue.finished_job_registry.count < total:
            time.sleep(0.002)
        return total / (time.perf_counter() - start)
    finally:
        os.killpg(pool.pid, signal.SIGKILL)
        pool.wait()


def main():
    scenario, url, ops, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if scenario == "lock":
        rate = run_lock(url, ops, conc)
    elif scenario == "jobs":
        rate = run_jobs(url, ops, conc)
    else:
        rate = asyncio.run(run_async(scenario, url, ops, conc))
    print(round(rate))


if __name__ == "__main__":
    main()
