"""The soak's clients. Each logical client is one sequential task, so what it wrote before a
read was answered before that read was sent; servers are picked at random per request unless
a client is bound to one."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from client import Call, Http, Outcome, Reply, short_id
from model import (
    Chain,
    CounterRecord,
    DeadId,
    DeadRead,
    Enqueue,
    Grant,
    Observations,
    Processing,
    RecordQuery,
    RecordRegister,
    Register,
    RegisterRead,
    Unreadable,
    Write,
)

USERS = 14
SESSIONS_PER_USER = 3
FIELDS = tuple(f"f{i}" for i in range(16))  # many, so that a field's last write is often in an outage
CACHE_OWNERS = 10
KEYS_PER_OWNER = 10
CACHE_TTL_S = 300
LOCKS = ("chaos-a", "chaos-b", "chaos-c")
LOCK_CLIENTS = 6
LOCK_TTL_MS = 2000
LOCK_WAIT_MS = 200
WORKERS = 4
LEASE_MS = 3000
FETCH_WAIT_MS = 1000
DELAYED_SHARE = 0.25  # of jobs enqueued with a delay
DELAY_MS = (200, 3000)
RETRIES = 10  # how often a delete, revoke, create or enqueue is retried until acknowledged
POLICY = {"limit": 50, "period_ms": 1000}
COLLECTION = "chaos"
COLLECTION_SPEC = {"indexes": [{"field": "kind", "kind": "equal"}, {"field": "n", "kind": "range"}], "ttl_s": 0}
RECORD_KINDS = ("a", "b", "c", "d")
RECORD_WRITERS = 3
COUNTER_CLIENTS = 2
COUNTERS = 3  # shared counter records at a time
COUNTER_GENERATION_S = 8.0  # then three new ones: some are created in an outage
# Range queries after the traffic (n is an integer 0–999: bounds between integers, whether
# the server's bounds are inclusive or not).
RANGES = ({"min": 199.5, "max": 600.5}, {"min": 899.5}, {"max": 49.5})
GET_BATCH = 500
QUERY_LIMIT = 200  # a page: small enough that the scans and most queries take several (cursors)


@dataclass
class Context:
    http: Http
    obs: Observations
    stop: asyncio.Event
    rng: random.Random

    def inst(self) -> int:
        return self.rng.randrange(len(self.http.urls))

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))


async def until_acked(ctx: Context, attempt: Callable[[], Awaitable[Reply]]) -> tuple[Reply, bool]:
    """Calls `attempt()` until a 2xx, at most RETRIES times: the last reply, and whether an
    earlier attempt's outcome was unknown (it may still take effect, later)."""
    reply: Reply = await attempt()
    unknown = False
    for _ in range(RETRIES - 1):
        if reply.call.ok:
            break
        unknown = unknown or reply.call.outcome is Outcome.UNKNOWN
        await ctx.pause(0.1, 0.3)
        reply = await attempt()
    return reply, unknown


def data_value(body: Any, name: str) -> int | None:
    data = body.get("data") if isinstance(body, dict) else None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


class SessionUser:
    """Owns every session of one user: patches, reads, deletes, rotates, revokes them all."""

    def __init__(self, ctx: Context, user: str) -> None:
        self.ctx = ctx
        self.name = user
        self.user = user  # a new one after a revocation that may still land late
        self.live: list[Chain] = []

    async def create(self) -> None:
        ctx = self.ctx
        reply, _ = await until_acked(ctx, lambda: ctx.http.request(
            "session", "create", ctx.inst(), "POST", "/v1/sessions", {"user": self.user}))
        sid = reply.body.get("id") if reply.call.ok and isinstance(reply.body, dict) else None
        if isinstance(sid, str):
            reply.call.target += f" → {short_id(sid)}"
            chain = Chain(self.user, [sid], {f: Register(f"{self.user}/{f}") for f in FIELDS}, {sid: {reply.call.inst}})
            self.live.append(chain)
            ctx.obs.chains.append(chain)

    async def fill(self) -> None:
        while len(self.live) < SESSIONS_PER_USER and not self.ctx.stop.is_set():
            await self.create()

    async def run(self) -> None:
        await self.fill()
        while not self.ctx.stop.is_set():
            if self.live:
                await self.step(self.ctx.rng.choice(self.live))
            await self.fill()
            await self.ctx.pause(0.05, 0.15)

    async def step(self, chain: Chain) -> None:
        r = self.ctx.rng.random()  # sessions live about 20 s: most see an outage or two
        if r < 0.003:
            await self.revoke_all()
        elif r < 0.013:
            await self.delete(chain)
        elif r < 0.033:
            await self.rotate(chain)
        elif r < 0.4:
            await self.get(chain)
        else:
            await self.patch(chain)

    def answered(self, chain: Chain, call: Call) -> None:
        """Keeps which servers answered for the id, and notes a live session's 404."""
        if call.ok:
            chain.served.setdefault(chain.current, set()).add(call.inst)
        elif call.status == 404:
            self.ctx.obs.unreadable.append(Unreadable(call, call.inst in chain.served.get(chain.current, set())))

    async def patch(self, chain: Chain) -> None:
        name = self.ctx.rng.choice(FIELDS)
        register = chain.fields[name]
        value = register.next_value()
        reply = await self.ctx.http.request("session", "patch", self.ctx.inst(), "PATCH",
                                            f"/v1/sessions/{chain.current}", {"data": {name: value}})
        register.writes.append(Write(value, reply.call))
        self.answered(chain, reply.call)

    async def get(self, chain: Chain) -> None:
        upto = {name: len(r.writes) for name, r in chain.fields.items()}
        reply = await self.ctx.http.request("session", "get", self.ctx.inst(), "GET", f"/v1/sessions/{chain.current}")
        self.answered(chain, reply.call)
        if reply.call.status == 200:
            for name, register in chain.fields.items():
                value = data_value(reply.body, name)
                self.ctx.obs.reads.append(RegisterRead("session", register, upto[name], value, reply.call))

    async def rotate(self, chain: Chain) -> None:
        old = chain.current
        reply = await self.ctx.http.request("session", "rotate", self.ctx.inst(), "POST", f"/v1/sessions/{old}/rotate")
        new = reply.body.get("id") if reply.call.ok and isinstance(reply.body, dict) else None
        if isinstance(new, str):
            reply.call.target += f" → {short_id(new)}"
            chain.ids.append(new)
            chain.served[new] = {reply.call.inst}
            self.ctx.obs.dead.append(DeadId(old, "rotate", reply.call))
        elif reply.call.outcome is Outcome.UNKNOWN:
            self.retire(chain, "uncertain")
        else:
            self.answered(chain, reply.call)

    async def delete(self, chain: Chain) -> None:
        ctx = self.ctx
        reply, _ = await until_acked(ctx, lambda: ctx.http.request(
            "session", "delete", ctx.inst(), "DELETE", f"/v1/sessions/{chain.current}"))
        if reply.call.ok:
            ctx.obs.dead.append(DeadId(chain.current, "delete", reply.call, json.dumps(reply.body)))
        self.retire(chain, "dead" if reply.call.ok else "uncertain")

    async def revoke_all(self) -> None:
        ctx = self.ctx
        reply, unknown = await until_acked(ctx, lambda: ctx.http.request(
            "session", "revoke_all", ctx.inst(), "DELETE", f"/v1/users/{self.user}/sessions"))
        for chain in list(self.live):
            if reply.call.ok:
                ctx.obs.dead.append(DeadId(chain.current, "revoke", reply.call, json.dumps(reply.body)))
            self.retire(chain, "dead" if reply.call.ok else "uncertain")
        if unknown or not reply.call.ok:  # an attempt landing late would end the replacements too
            self.user = f"{self.name}.{len(ctx.obs.dead)}"

    def retire(self, chain: Chain, state: str) -> None:
        chain.state = state
        self.live.remove(chain)


class CacheOwner:
    """Owns a few cache keys: puts versioned values, deletes, reads them. A deleted key rests
    (is only read) for 3–12 s, so deletes are often the last word on a key for a while — and
    at the end."""

    def __init__(self, ctx: Context, keys: list[str]) -> None:
        self.ctx = ctx
        self.registers = [Register(k) for k in keys]
        self.resting: dict[str, float] = {}  # key -> until when it is only read
        ctx.obs.cache.extend(self.registers)

    async def run(self) -> None:
        while not self.ctx.stop.is_set():
            register = self.ctx.rng.choice(self.registers)
            r = self.ctx.rng.random()
            if r < 0.3 or self.resting.get(register.name, 0.0) > time.monotonic():
                await read_cache(self.ctx, register, self.ctx.inst())
            elif r < 0.85:
                await self.put(register)
            else:
                await self.delete(register)
            await self.ctx.pause(0.05, 0.15)

    async def put(self, register: Register) -> None:
        version = register.next_value()
        reply = await self.ctx.http.request("cache", "put", self.ctx.inst(), "PUT",
                                            f"/v1/cache/chaos/{register.name}?ttl_s={CACHE_TTL_S}", {"v": version})
        register.writes.append(Write(version, reply.call))

    async def delete(self, register: Register) -> None:
        path = f"/v1/cache/chaos/{register.name}"
        reply = await self.ctx.http.request("cache", "delete", self.ctx.inst(), "DELETE", path)
        register.writes.append(Write(None, reply.call))
        if reply.call.ok:
            self.resting[register.name] = time.monotonic() + self.ctx.rng.uniform(3.0, 12.0)


async def read_cache(ctx: Context, register: Register, inst: int, final: bool = False) -> None:
    upto = len(register.writes)
    op = "final_get" if final else "get"
    reply = await ctx.http.request("cache", op, inst, "GET", f"/v1/cache/chaos/{register.name}")
    if reply.call.status == 404:
        ctx.obs.reads.append(RegisterRead("cache", register, upto, None, reply.call, final))
    elif reply.call.status == 200:
        v = reply.body.get("v") if isinstance(reply.body, dict) else None
        ctx.obs.reads.append(RegisterRead("cache", register, upto, v if isinstance(v, int) else -1, reply.call, final))
    elif final:
        ctx.obs.unanswered_final += 1


async def read_final(ctx: Context, chain: Chain, inst: int) -> None:
    """Reads a live session at the end: a 404 reads as every field missing."""
    reply = await ctx.http.request("session", "final_get", inst, "GET", f"/v1/sessions/{chain.current}")
    if reply.call.status not in (200, 404):
        ctx.obs.unanswered_final += 1
        return
    for name, register in chain.fields.items():
        value = data_value(reply.body, name) if reply.call.status == 200 else None
        ctx.obs.reads.append(RegisterRead("session", register, len(register.writes), value, reply.call, True))


async def read_dead(ctx: Context, dead: DeadId, inst: int, final: bool = False) -> None:
    op = "final_get_ended" if final else "get_ended"
    reply = await ctx.http.request("session", op, inst, "GET", f"/v1/sessions/{dead.sid}")
    if reply.call.status in (200, 404):
        ctx.obs.dead_reads.append(DeadRead(dead, reply.call, final))
    elif final:
        ctx.obs.unanswered_final += 1


async def probe_dead(ctx: Context) -> None:
    """Reads ended session ids at random: none may come back."""
    while not ctx.stop.is_set():
        if ctx.obs.dead:
            await read_dead(ctx, ctx.rng.choice(ctx.obs.dead), ctx.inst())
        await ctx.pause(0.05, 0.15)


async def produce_jobs(ctx: Context) -> None:
    seq = 0
    while not ctx.stop.is_set():
        seq += 1
        job_id = f"j{seq}"
        body: dict[str, Any] = {"id": job_id, "payload": {"n": seq}}
        delay_ms = ctx.rng.randint(*DELAY_MS) if ctx.rng.random() < DELAYED_SHARE else 0
        if delay_ms:
            body["delay_ms"] = delay_ms
        reply = await ctx.http.request("job", "enqueue", ctx.inst(), "POST", "/v1/queues/chaos/jobs", body)
        ctx.obs.enqueues.append(Enqueue(job_id, reply.call, delay_ms / 1000))
        for _ in range(RETRIES - 1):
            if reply.call.ok or ctx.stop.is_set():
                break
            await ctx.pause(0.1, 0.3)
            reply = await ctx.http.request("job", "enqueue", ctx.inst(), "POST", "/v1/queues/chaos/jobs", body)
            ctx.obs.enqueues.append(Enqueue(job_id, reply.call, delay_ms / 1000))
        await ctx.pause(0.05, 0.15)


@dataclass
class Worker:
    ctx: Context
    name: str
    inst: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        body = {"worker": self.name, "max": 4, "lease_ms": LEASE_MS, "wait_ms": FETCH_WAIT_MS}
        while not self.stop.is_set():
            reply = await self.ctx.http.request("job", "fetch", self.inst, "POST", "/v1/queues/chaos/fetch", body,
                                                timeout=FETCH_WAIT_MS / 1000 + 2)
            jobs = reply.body.get("jobs") if reply.call.status == 200 and isinstance(reply.body, dict) else None
            if isinstance(jobs, list):
                for job in jobs:
                    await self.process(reply.call, job)
            elif reply.call.status != 204:
                await self.ctx.pause(0.05, 0.15)

    async def process(self, fetch: Call, job: dict[str, Any]) -> None:
        done = Processing(str(job.get("id")), fetch, LEASE_MS / 1000)
        self.ctx.obs.processings.append(done)
        await self.ctx.pause(0.005, 0.015)
        reply = await self.ctx.http.request("job", "ack", self.inst, "POST", f"/v1/queues/chaos/jobs/{done.job_id}/ack",
                                            {"token": job.get("token")})
        done.ack = reply.call
        outcome = reply.body.get("outcome") if isinstance(reply.body, dict) else None
        done.ack_outcome = outcome if isinstance(outcome, str) else None


def wall_to_monotonic(epoch_ms: int) -> float:
    return epoch_ms / 1000 - (time.time() - time.monotonic())


async def lock_client(ctx: Context) -> None:
    """Takes a contended lock, holds it 20–50 ms, releases it; 503 while Redis is away."""
    body = {"ttl_ms": LOCK_TTL_MS, "wait_ms": LOCK_WAIT_MS}
    while not ctx.stop.is_set():
        name = ctx.rng.choice(LOCKS)
        reply = await ctx.http.request("lock", "acquire", ctx.inst(), "POST", f"/v1/locks/{name}/acquire", body,
                                       timeout=LOCK_WAIT_MS / 1000 + 2)
        if reply.call.ok and isinstance(reply.body, dict):
            await hold_and_release(ctx, name, reply)
        await ctx.pause(0.1, 0.3)


async def hold_and_release(ctx: Context, name: str, reply: Reply) -> None:
    body = reply.body
    expiry = wall_to_monotonic(int(body.get("expires_at_ms", 0)))
    grant = Grant(name, int(body.get("fence", -1)), reply.call, LOCK_TTL_MS / 1000, expiry)
    ctx.obs.grants.append(grant)
    await ctx.pause(0.02, 0.05)
    grant.release_sent = time.monotonic()
    release = {"token": body.get("token")}
    await ctx.http.request("lock", "release", ctx.inst(), "POST", f"/v1/locks/{name}/release", release)


async def define_policy(http: Http) -> None:
    for inst in range(len(http.urls)):
        reply = await http.request("ratelimit", "define", inst, "PUT", "/v1/ratelimit/policies/chaos", POLICY)
        if not reply.call.ok:
            raise RuntimeError(f"defining the rate-limit policy on server {inst} answered {reply.call.label}")


async def check_limits(ctx: Context) -> None:
    while not ctx.stop.is_set():
        body = {"key": f"k{ctx.rng.randrange(5)}", "cost": 1}
        await ctx.http.request("ratelimit", "check", ctx.inst(), "POST", "/v1/ratelimit/chaos/check", body)
        await ctx.pause(0.05, 0.15)


class RecordWriter:
    """Owns its record ids: puts new ones, overwrites, patches and deletes them (an id once
    deleted may be put again). Each id thus has one sequential writer, on either server."""

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.ids: list[RecordRegister] = []

    async def run(self) -> None:
        while not self.ctx.stop.is_set():
            r = self.ctx.rng.random()
            if r < 0.3 or not self.ids:
                await self.put(self.new())
            elif r < 0.55:
                await self.put(self.ctx.rng.choice(self.ids))
            elif r < 0.75:
                await self.patch(self.ctx.rng.choice(self.ids))
            else:
                await self.delete(self.ctx.rng.choice(self.ids))
            await self.ctx.pause(0.1, 0.2)

    def new(self) -> RecordRegister:
        register = RecordRegister(f"{self.name}-{len(self.ids)}")
        self.ids.append(register)
        self.ctx.obs.records.append(register)
        return register

    def path(self, register: RecordRegister) -> str:
        return f"/v1/records/{COLLECTION}/{register.name}"

    async def put(self, register: RecordRegister) -> None:
        seq = register.next_value()
        data = {"kind": self.ctx.rng.choice(RECORD_KINDS), "n": self.ctx.rng.randrange(1000), "v": seq, "at": seq}
        register.carried[seq] = data
        reply = await self.ctx.http.request("record", "put", self.ctx.inst(), "PUT", self.path(register),
                                            {"data": data})
        register.writes.append(Write(seq, reply.call, "put"))

    async def patch(self, register: RecordRegister) -> None:
        seq = register.next_value()
        data = {"n": self.ctx.rng.randrange(1000), "at": seq}
        register.carried[seq] = data
        reply = await self.ctx.http.request("record", "patch", self.ctx.inst(), "PATCH", self.path(register),
                                            {"data": data})
        register.writes.append(Write(seq, reply.call, "patch"))

    async def delete(self, register: RecordRegister) -> None:
        reply = await self.ctx.http.request("record", "delete", self.ctx.inst(), "DELETE", self.path(register))
        register.writes.append(Write(None, reply.call, "delete"))


async def count(ctx: Context, t0: float) -> None:
    """Increments shared counter records (field `c`, by 1); every COUNTER_GENERATION_S the
    counters are new ones, so that some are created while Redis is away. Not retried."""
    while not ctx.stop.is_set():
        generation = int((time.monotonic() - t0) / COUNTER_GENERATION_S)
        rid = f"cnt{generation}-{ctx.rng.randrange(COUNTERS)}"
        counter = ctx.obs.counters.setdefault(rid, CounterRecord(rid))
        reply = await ctx.http.request("record", "incr", ctx.inst(), "POST", f"/v1/records/{COLLECTION}/{rid}/incr",
                                       {"field": "c", "by": 1})
        counter.incrs.append(reply.call)
        await ctx.pause(0.05, 0.15)


async def define_collection(http: Http) -> None:
    """Defines the records collection on A (definitions need Redis), then reads it on each
    server so both hold its definition before the faults."""
    reply = await http.request("record", "define", 0, "PUT", f"/v1/collections/{COLLECTION}", COLLECTION_SPEC)
    if not reply.call.ok:
        raise RuntimeError(f"defining the records collection answered {reply.call.label}")
    for inst in range(len(http.urls)):
        reply = await http.request("record", "describe", inst, "GET", f"/v1/collections/{COLLECTION}")
        if not reply.call.ok:
            raise RuntimeError(f"reading the records collection on server {inst} answered {reply.call.label}")


async def read_records(ctx: Context, inst: int) -> None:
    """Reads every record id and counter on one server at the end (`POST …/get`, in batches)."""
    obs = ctx.obs
    registers = {r.name: r for r in obs.records}
    ids = [*registers, *obs.counters]
    present = obs.record_present.setdefault(inst, set())
    for i in range(0, len(ids), GET_BATCH):
        chunk = ids[i:i + GET_BATCH]
        reply = await ctx.http.request("record", "final_get", inst, "POST", f"/v1/records/{COLLECTION}/get",
                                       {"ids": chunk})
        found = reply.body.get("records") if reply.call.status == 200 and isinstance(reply.body, dict) else None
        if not isinstance(found, list) or len(found) != len(chunk):
            obs.unanswered_final += len(chunk)
            obs.record_get_failed.add(inst)
            continue
        for rid, record in zip(chunk, found, strict=True):
            data = record.get("data") if isinstance(record, dict) else None
            data = data if isinstance(data, dict) else None
            if data is not None:
                present.add(rid)
            if rid in obs.counters:
                c = data.get("c") if data is not None else None
                obs.counters[rid].final[inst] = c if isinstance(c, int) or data is None else -1
                continue
            register = registers[rid]
            at = data.get("at") if data is not None else None
            value = None if data is None else at if isinstance(at, int) else -1
            obs.reads.append(RegisterRead("record", register, len(register.writes), value, reply.call, True, data))


async def page(ctx: Context, inst: int, label: str, spec: dict[str, Any]) -> RecordQuery:
    """A query paged to its end (`spec` {}: every record, by id)."""
    q = RecordQuery(inst, label, spec)
    cursor: str | None = None
    for _ in range(10_000):
        body: dict[str, Any] = {**spec, "limit": QUERY_LIMIT}
        if cursor is not None:
            body["cursor"] = cursor
        reply = await ctx.http.request("record", "final_query", inst, "POST", f"/v1/records/{COLLECTION}/query", body)
        q.calls.append(reply.call)
        records = reply.body.get("records") if reply.call.status == 200 and isinstance(reply.body, dict) else None
        if not isinstance(records, list):
            ctx.obs.unanswered_final += 1
            return q
        for record in records:
            rid = record.get("id") if isinstance(record, dict) else None
            q.ids.append(str(rid))
            q.data[str(rid)] = record.get("data") if isinstance(record, dict) else None
        next_cursor = reply.body.get("cursor")
        if not isinstance(next_cursor, str) or not next_cursor:
            q.complete = True
            return q
        cursor = next_cursor
    return q


async def query_records(ctx: Context, inst: int) -> None:
    """The full scan and every index query, paged to the end, on one server."""
    obs = ctx.obs
    obs.record_scans[inst] = await page(ctx, inst, "scan", {})
    for kind in RECORD_KINDS:
        obs.record_queries.append(await page(ctx, inst, f"kind = {kind}", {"where": {"kind": kind}}))
    for bounds in RANGES:
        label = f"{bounds.get('min', '-∞')} ≤ n ≤ {bounds.get('max', '∞')}"
        obs.record_queries.append(await page(ctx, inst, label, {"range": {"field": "n", **bounds}}))


def child(ctx: Context, n: int) -> Context:
    """The same context with a random generator of its own, so each client's choices follow the seed."""
    return Context(ctx.http, ctx.obs, ctx.stop, random.Random(ctx.rng.getrandbits(64) + n))


def clients(ctx: Context) -> list[Coroutine[Any, Any, None]]:
    """Every client but the job workers (which outlive the traffic to drain the queue)."""
    users = [SessionUser(child(ctx, i), f"u{i}").run() for i in range(USERS)]
    caches = [CacheOwner(child(ctx, 100 + i), [f"k{i}-{j}" for j in range(KEYS_PER_OWNER)]).run()
              for i in range(CACHE_OWNERS)]
    locks = [lock_client(child(ctx, 200 + i)) for i in range(LOCK_CLIENTS)]
    rest = [probe_dead(child(ctx, 300)), produce_jobs(child(ctx, 301)), check_limits(child(ctx, 302))]
    records = [RecordWriter(child(ctx, 500 + i), f"w{i}").run() for i in range(RECORD_WRITERS)]
    t0 = time.monotonic()
    counters = [count(child(ctx, 600 + i), t0) for i in range(COUNTER_CLIENTS)]
    return users + caches + locks + rest + records + counters


def workers(ctx: Context) -> list[Worker]:
    return [Worker(child(ctx, 400 + i), f"w{i}", i % len(ctx.http.urls)) for i in range(WORKERS)]
