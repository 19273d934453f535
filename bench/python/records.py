"""Records and counters from Python: the redkit client (HTTP to ``redkit serve`` on Redis)
beside redis-py asyncio doing the same by hand on the same Redis — the layout the founding
service wrote (issue 18): a document as a hash of JSON-encoded fields, a set per value of the
equality-indexed field, a sorted set for the range field, all written in one MULTI, and a
90-day TTL on every key; counters as INCRBY on minute/hour/day bucket keys with EXPIRE.

python records.py --redis URL --redkit URL [--scenario S] [--calls N] [--runs R] [--only a,b] [--rate]
python records.py --redis URL --redkit URL --memory [--docs N]

Scenarios (one call at a time, on one keep-alive connection, over 1,000 documents of about
500 bytes with an ``equal`` index on ``status`` and a ``range`` index on ``score``):

- ``put``: replaces a document (the next of the 1,000 ids) with another of new status and
  score (the status differs three times in four), so both sides move its index entries.
- ``get``: reads one document by id.
- ``query``: ``status == "open"`` with ``2500 <= score <= 7500``, the first page of 20 in
  score order, documents included.
- ``counter``: counts one hit for one of 5 routes: the route's and the total's minute, hour
  and day buckets.

``--rate`` measures the one scenario and side named by ``--scenario``/``--only`` and prints
"<calls/s> <p50 ms> <p99 ms>" as its last line (bench/run's measure() reads it: the "From
Python" record rows of bench/RESULTS.md). Without it, every scenario and side is measured
alternately ``--runs`` times; medians as a table on stderr and JSON on the last line.

``--memory`` writes ``--docs`` documents (default 1,000) through ``redkit serve`` into a new
collection and through the redis-py layout under a new prefix (``redis-py``: documents as
hashes, as timed; ``redis-py-string``: documents as one JSON string each, the leaner layout),
sums ``MEMORY USAGE key SAMPLES 0`` over each side's keys (SCAN by prefix: redkit's are
``rk:{rec:COLLECTION}:*``) and prints one tab-separated line per side: "<side> <bytes per
1,000 documents> <keys> <average document JSON bytes>".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Tuple

COLLECTION = "bench_records"
MEMORY_COLLECTION = "bench_records_memory"
INDEXES = [{"field": "status", "kind": "equal"}, {"field": "score", "kind": "range"}]
DOCS = 1000
STATUSES = ("open", "fixed", "ignored", "regressed")
QUERY_STATUS, QUERY_MIN, QUERY_MAX, PAGE = "open", 2500, 7500, 20
TTL_S = 90 * 86400  # redkit's default collection TTL, and the founding service's
COUNTER = "bench_hits"
ROUTES = tuple(f"/api/v1/route{i}" for i in range(5))
# Bucket size and retention (s) per granularity: redkit's (minutes 2 days, hours 90 days,
# days 3 years).
GRANULARITIES = (("minute", 60, 2 * 86400), ("hour", 3600, 90 * 86400), ("day", 86400, 3 * 365 * 86400))
WARMUP = 200

Call = Callable[[], Awaitable[None]]


def doc_id(i: int) -> str:
    return f"pattern-{i:05d}"


def make_doc(rng: random.Random, i: int) -> Dict[str, Any]:
    """One "pattern" of the founding service: about 500 bytes of JSON."""
    words = [
        "timeout",
        "connection",
        "refused",
        "retry",
        "lock",
        "deadlock",
        "import",
        "cache",
        "worker",
        "queue",
        "panic",
        "overflow",
        "null",
        "index",
        "schema",
        "migration",
    ]
    message = " ".join(rng.choice(words) for _ in range(40))[:246]
    return {
        "title": f"{rng.choice(words).capitalize()} {rng.choice(words)} in module {rng.randrange(100)}",
        "status": rng.choice(STATUSES),
        "score": rng.randrange(10000),
        "kind": rng.choice(["error", "warning", "flaky-test", "perf"]),
        "message": message,
        "file": f"src/{rng.choice(words)}/{rng.choice(words)}_{rng.randrange(1000)}.py",
        "line": rng.randrange(1, 2000),
        "tags": [rng.choice(words) for _ in range(3)],
        "seen": rng.randrange(1, 500),
        "first_seen_ms": 1_700_000_000_000 + i * 1000,
        "fix": f"commit {rng.getrandbits(64):016x}",
    }


def doc_pool(seed: int, n: int) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    return [make_doc(rng, i) for i in range(n)]


# --- redis-py by hand --------------------------------------------------------------------------
class ByHand:
    """The founding service's layout on redis-py asyncio, under ``prefix``: a document as a
    hash of JSON-encoded fields (``layout="hash"``, what the timed scenarios use) or as one
    JSON string (``layout="string"``, measured for memory only)."""

    def __init__(self, r: Any, prefix: str, layout: str = "hash") -> None:
        self.r = r
        self.prefix = prefix
        self.layout = layout
        self.score_key = f"{prefix}:z:score"

    def doc_key(self, record_id: str) -> str:
        return f"{self.prefix}:d:{record_id}"

    def status_key(self, encoded: str) -> str:
        return f"{self.prefix}:i:status:{encoded}"

    def _decode(self, stored: Any) -> Any:
        if not stored:
            return None
        if self.layout == "string":
            return json.loads(stored)
        return {k.decode(): json.loads(v) for k, v in stored.items()}

    async def put(self, record_id: str, data: Dict[str, Any]) -> None:
        """Replaces the document and moves its index entries in one MULTI; WATCH on the
        document so a concurrent writer cannot leave a stale index entry (redis-py's
        documented read-then-write: WATCH, read, MULTI … EXEC)."""
        from redis.exceptions import WatchError

        dk = self.doc_key(record_id)
        status, score = json.dumps(data["status"], separators=(",", ":")), data["score"]
        if self.layout == "string":
            text = json.dumps(data, separators=(",", ":"))
        else:
            fields = {k: json.dumps(v, separators=(",", ":")) for k, v in data.items()}
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(dk)
                    if self.layout == "string":
                        old_doc = await pipe.get(dk)
                        old = (
                            None
                            if old_doc is None
                            else json.dumps(json.loads(old_doc).get("status"), separators=(",", ":"))
                        )
                    else:
                        old_field = await pipe.hget(dk, "status")
                        old = None if old_field is None else old_field.decode()
                    pipe.multi()
                    if old is not None and old != status:
                        pipe.srem(self.status_key(old), record_id)
                    if self.layout == "string":
                        pipe.set(dk, text, ex=TTL_S)
                    else:
                        pipe.delete(dk)
                        pipe.hset(dk, mapping=fields)
                        pipe.expire(dk, TTL_S)
                    sk = self.status_key(status)
                    pipe.sadd(sk, record_id)
                    pipe.expire(sk, TTL_S)
                    pipe.zadd(self.score_key, {record_id: score})
                    pipe.expire(self.score_key, TTL_S)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    def _read(self, target: Any, record_id: str) -> Any:
        dk = self.doc_key(record_id)
        return target.get(dk) if self.layout == "string" else target.hgetall(dk)

    async def get(self, record_id: str) -> Any:
        return self._decode(await self._read(self.r, record_id))

    async def query(self, tmp_key: str) -> List[Dict[str, Any]]:
        """status == open ∩ score range, first page in score order: ZINTERSTORE of the status
        set (weight 0) with the score set into a scratch key, ZRANGE BYSCORE LIMIT, DEL — in
        one MULTI — then the page's documents in one pipeline."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zinterstore(tmp_key, {self.status_key(json.dumps(QUERY_STATUS)): 0, self.score_key: 1})
            pipe.zrange(tmp_key, QUERY_MIN, QUERY_MAX, byscore=True, offset=0, num=PAGE)
            pipe.delete(tmp_key)
            _, ids, _ = await pipe.execute()
        async with self.r.pipeline(transaction=False) as pipe:
            for i in ids:
                self._read(pipe, i.decode())
            stored = await pipe.execute()
        # A document that expired leaves its id in the indexes until they expire: skip it.
        return [d for d in map(self._decode, stored) if d is not None]

    async def count(self) -> int:
        return await self.r.zcard(self.score_key)


async def counter_by_hand(r: Any, name: str, route: str) -> None:
    """One hit: INCRBY + EXPIRE on the total's and the route's minute, hour and day buckets,
    and the route remembered among the counter's label sets, in one MULTI."""
    now = int(time.time())
    async with r.pipeline(transaction=True) as pipe:
        for g, size, keep in GRANULARITIES:
            start = now - now % size
            for label in ("", route):
                key = f"bench:pyct:{name}:{g}:{label}:{start}"
                pipe.incrby(key, 1)
                pipe.expire(key, size + keep)
        labels = f"bench:pyct:{name}:labels"
        pipe.sadd(labels, route)
        pipe.expire(labels, 90 * 86400)
        await pipe.execute()


async def side_redis_py(args: argparse.Namespace, scenario: str) -> Call:
    import redis.asyncio as aredis

    r = aredis.Redis.from_url(args.redis, max_connections=1)
    store = ByHand(r, f"bench:pyrec:{COLLECTION}")
    pool = doc_pool(18, DOCS)
    if await store.count() < DOCS:
        for i, d in enumerate(pool):
            await store.put(doc_id(i), d)
    n = 0
    if scenario == "put":
        updates = doc_pool(1818, DOCS)

        async def call() -> None:
            nonlocal n
            await store.put(doc_id(n % DOCS), updates[n % DOCS])
            n += 1
    elif scenario == "get":

        async def call() -> None:
            nonlocal n
            assert await store.get(doc_id((n * 7) % DOCS)) is not None
            n += 1
    elif scenario == "query":
        tmp = f"bench:pyrec:tmp:{id(store)}:{time.monotonic_ns()}"

        async def call() -> None:
            page = await store.query(tmp)
            assert len(page) == PAGE, len(page)
    elif scenario == "counter":

        async def call() -> None:
            nonlocal n
            await counter_by_hand(r, COUNTER, ROUTES[n % len(ROUTES)])
            n += 1
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    return call


# --- redkit ------------------------------------------------------------------------------------
async def side_redkit(args: argparse.Namespace, scenario: str) -> Call:
    import redkit

    rk = redkit.AsyncClient(args.redkit)
    coll = rk.collection(COLLECTION)
    info = await coll.info()
    if info is None:  # bench/run defines it first; a standalone run defines it here
        info = await coll.define(INDEXES)
    if info.count < DOCS:
        for i, d in enumerate(doc_pool(18, DOCS)):
            await coll.put(doc_id(i), d)
    n = 0
    if scenario == "put":
        updates = doc_pool(1818, DOCS)

        async def call() -> None:
            nonlocal n
            await coll.put(doc_id(n % DOCS), updates[n % DOCS])
            n += 1
    elif scenario == "get":

        async def call() -> None:
            nonlocal n
            assert await coll.get(doc_id((n * 7) % DOCS)) is not None
            n += 1
    elif scenario == "query":
        where = {"status": QUERY_STATUS}
        span = redkit.Range("score", QUERY_MIN, QUERY_MAX)

        async def call() -> None:
            page = await coll.query(where, range=span, limit=PAGE)
            assert len(page) == PAGE, len(page)
    elif scenario == "counter":

        async def call() -> None:
            nonlocal n
            await rk.counters.incr(COUNTER, labels={"route": ROUTES[n % len(ROUTES)]})
            n += 1
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    return call


SIDES = {"redkit": side_redkit, "redis-py": side_redis_py}
SCENARIOS = ("put", "get", "query", "counter")


async def measure(side: str, scenario: str, args: argparse.Namespace) -> Tuple[float, float, float]:
    """(calls/s, p50 ms, p99 ms) of ``args.calls`` calls, one at a time."""
    call = await SIDES[side](args, scenario)
    for _ in range(WARMUP):
        await call()
    times = []
    clock = time.perf_counter
    start = clock()
    for _ in range(args.calls):
        t = clock()
        await call()
        times.append(clock() - t)
    elapsed = clock() - start
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1e3  # noqa: E731
    return args.calls / elapsed, pick(0.50), pick(0.99)


# --- memory ------------------------------------------------------------------------------------
async def memory_of(r: Any, pattern: str) -> Tuple[int, int, int]:
    """(bytes, keys, bytes in document keys): MEMORY USAGE with SAMPLES 0 (every nested value
    counted) over SCAN MATCH ``pattern``."""
    total = keys = docs = 0
    async for key in r.scan_iter(match=pattern, count=1000):
        used = await r.memory_usage(key, samples=0) or 0
        total += used
        keys += 1
        if b":d:" in key:
            docs += used
    return total, keys, docs


async def memory(args: argparse.Namespace) -> None:
    import redis.asyncio as aredis

    import redkit

    r = aredis.Redis.from_url(args.redis, max_connections=1)
    docs = doc_pool(500, args.docs)
    avg = statistics.mean(len(json.dumps(d, separators=(",", ":"))) for d in docs)
    results = {}

    # redkit: a collection of its own, dropped first, defined with the two indexes.
    rk = redkit.AsyncClient(args.redkit)
    coll = rk.collection(MEMORY_COLLECTION)
    await coll.drop()
    await coll.define(INDEXES)
    for i, d in enumerate(docs):
        await coll.put(doc_id(i), d)
    results["redkit"] = await memory_of(r, "rk:{rec:" + MEMORY_COLLECTION + "}:*")

    # redis-py by hand, each layout under a prefix of its own, emptied first.
    for side, layout in (("redis-py", "hash"), ("redis-py-string", "string")):
        prefix = f"bench:pymem:{layout}:{MEMORY_COLLECTION}"
        async for key in r.scan_iter(match=prefix + ":*", count=1000):
            await r.delete(key)
        store = ByHand(r, prefix, layout)
        for i, d in enumerate(docs):
            await store.put(doc_id(i), d)
        results[side] = await memory_of(r, prefix + ":*")

    for side, (used, keys, in_docs) in results.items():
        print(
            f"  {side}: {used:,} bytes in {keys} keys ({in_docs:,} in the documents' keys) for "
            f"{args.docs} documents of {avg:.0f} bytes of JSON on average = "
            f"{used * 1000 / args.docs:,.0f} bytes per 1,000",
            file=sys.stderr,
        )
    for side, (used, keys, _) in results.items():
        print(f"{side}\t{used * 1000 / args.docs:.0f}\t{keys}\t{avg:.0f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--redkit", required=True)
    p.add_argument("--scenario", default="")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="")
    p.add_argument("--rate", action="store_true")
    p.add_argument("--memory", action="store_true")
    p.add_argument("--docs", type=int, default=DOCS)
    args = p.parse_args()
    if args.memory:
        asyncio.run(memory(args))
        return
    if args.rate:
        rate, p50, p99 = asyncio.run(measure(args.only, args.scenario, args))
        print(f"{rate:.0f} {p50:.3f} {p99:.3f}")
        return
    sides = [s for s in SIDES if not args.only or s in args.only.split(",")]
    scenarios = [s for s in SCENARIOS if not args.scenario or s in args.scenario.split(",")]
    results: Dict[str, Dict[str, List[float]]] = {sc: {s: [] for s in sides} for sc in scenarios}
    for run in range(args.runs):
        for sc in scenarios:
            for side in sides:
                rate, p50, p99 = asyncio.run(measure(side, sc, args))
                results[sc][side].append(rate)
                print(
                    f"  run {run + 1} {sc} {side}: {rate:.0f}/s (p50 {p50:.3f} ms, p99 {p99:.3f} ms)",
                    file=sys.stderr,
                )
    print("| scenario | side | calls/s (median) | redkit ÷ side |", file=sys.stderr)
    print("|---|---|---:|---:|", file=sys.stderr)
    medians = {sc: {s: statistics.median(v) for s, v in by.items()} for sc, by in results.items()}
    for sc, by in medians.items():
        for s, m in by.items():
            ratio = f"{by['redkit'] / m:.2f}" if "redkit" in by else "-"
            print(f"| {sc} | {s} | {m:.0f} | {ratio} |", file=sys.stderr)
    print(json.dumps({"calls": args.calls, "runs": args.runs, "median_per_s": medians, "all_per_s": results}))


if __name__ == "__main__":
    main()
