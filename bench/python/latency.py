"""Per-call latency of a cache GET from Python: the redkit client beside redis-py asyncio
GET on the same Redis, and the HTTP transports the client could have been built on.

python latency.py --redis URL --redkit URL [--calls N] [--runs R] [--only a,b] [--rate]

``--rate`` prints calls per second of the one side named by ``--only`` instead (bench/run's
measure() reads it as its last line: the "From Python" rows of bench/RESULTS.md).

Every side reads one 100-byte value, one call at a time (concurrency 1: the latency a
request handler pays), on one keep-alive connection. Each run measures every side
alternately; the result is each side's median per-call time over the runs (µs), printed as
JSON on the last line (and a markdown table on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Awaitable, Callable, Dict, List
from urllib.parse import urlsplit

VALUE = "x" * 100


async def side_redis_py(redis_url: str, redkit_url: str) -> Callable[[], Awaitable[None]]:
    import redis.asyncio as aredis

    r = aredis.Redis.from_url(redis_url, max_connections=1)
    await r.set("bench:py:k", VALUE)

    async def call() -> None:
        assert await r.get("bench:py:k") is not None

    return call


async def side_redkit(redis_url: str, redkit_url: str) -> Callable[[], Awaitable[None]]:
    import redkit

    rk = redkit.AsyncClient(redkit_url)
    cache = rk.cache("bench")
    await cache.set("py", VALUE, ttl=86400)

    async def call() -> None:
        assert await cache.get("py") is not None

    return call


def side_redkit_sync(redis_url: str, redkit_url: str) -> Callable[[], None]:
    import redkit

    rk = redkit.Client(redkit_url)
    cache = rk.cache("bench")
    cache.set("py", VALUE, ttl=86400)

    def call() -> None:
        assert cache.get("py") is not None

    return call


async def side_httpx(redis_url: str, redkit_url: str) -> Callable[[], Awaitable[None]]:
    import httpx

    client = httpx.AsyncClient(base_url=redkit_url)
    await client.put("/v1/cache/bench/py", params={"ttl_s": 86400}, json=VALUE)

    async def call() -> None:
        r = await client.get("/v1/cache/bench/py")
        assert r.json() is not None

    return call


async def side_aiohttp(redis_url: str, redkit_url: str) -> Callable[[], Awaitable[None]]:
    import aiohttp

    session = aiohttp.ClientSession(base_url=redkit_url, connector=aiohttp.TCPConnector(limit=1))
    async with session.put("/v1/cache/bench/py", params={"ttl_s": 86400}, json=VALUE) as r:
        assert r.status < 300

    async def call() -> None:
        async with session.get("/v1/cache/bench/py") as r:
            assert await r.json() is not None

    return call


async def side_raw(redis_url: str, redkit_url: str) -> Callable[[], Awaitable[None]]:
    """A hand-written request and a naive Content-Length read on asyncio streams: the floor."""
    u = urlsplit(redkit_url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    req = f"GET /v1/cache/bench/py HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode()

    async def call() -> None:
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        assert json.loads(body) is not None

    return call


ASYNC_SIDES = {
    "redis-py": side_redis_py,
    "redkit": side_redkit,
    "httpx": side_httpx,
    "aiohttp": side_aiohttp,
    "raw-socket": side_raw,
}
SYNC_SIDES = {"redkit-sync": side_redkit_sync}


async def measure_async(
    make: Callable[..., Awaitable[Callable[[], Awaitable[None]]]], args: argparse.Namespace
) -> float:
    call = await make(args.redis, args.redkit)
    for _ in range(200):
        await call()
    t = time.perf_counter()
    for _ in range(args.calls):
        await call()
    return (time.perf_counter() - t) / args.calls * 1e6


def measure_sync(make: Callable[..., Callable[[], None]], args: argparse.Namespace) -> float:
    call = make(args.redis, args.redkit)
    for _ in range(200):
        call()
    t = time.perf_counter()
    for _ in range(args.calls):
        call()
    return (time.perf_counter() - t) / args.calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--redkit", required=True)
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", default="")
    p.add_argument("--rate", action="store_true")
    args = p.parse_args()
    if args.rate:
        name = args.only
        if name in ASYNC_SIDES:
            us = asyncio.run(measure_async(ASYNC_SIDES[name], args))
        else:
            us = measure_sync(SYNC_SIDES[name], args)
        print(f"{1e6 / us:.0f}")
        return
    names = [n for n in [*ASYNC_SIDES, *SYNC_SIDES] if not args.only or n in args.only.split(",")]
    results: Dict[str, List[float]] = {n: [] for n in names}
    for run in range(args.runs):
        for name in names:
            if name in ASYNC_SIDES:
                us = asyncio.run(measure_async(ASYNC_SIDES[name], args))
            else:
                us = measure_sync(SYNC_SIDES[name], args)
            results[name].append(us)
            print(f"  run {run + 1} {name}: {us:.0f} µs", file=sys.stderr)
    medians = {n: statistics.median(v) for n, v in results.items()}
    base = medians.get("redis-py")
    print("| side | µs per GET (median) | ÷ redis-py |", file=sys.stderr)
    print("|---|---:|---:|", file=sys.stderr)
    for n, m in medians.items():
        ratio = f"{m / base:.2f}" if base else "-"
        print(f"| {n} | {m:.0f} | {ratio} |", file=sys.stderr)
    print(json.dumps({"calls": args.calls, "runs": args.runs, "median_us": medians, "all_us": results}))


if __name__ == "__main__":
    main()
