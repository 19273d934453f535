"""Recovery with a big job spool: once per run, during the first SIGKILL outage, 10,000 jobs are
enqueued on ONE server into a queue of their own (`chaos-spool`, batches of 1,000), so they land
in that server's SQLite spool. After Redis is back the soak measures the latency of the normal
traffic on that server during its recovery, and how long until all 10,000 are in Redis.

Nobody fetches `chaos-spool`: the workers and the job checks only know the queue `chaos`. The
jobs stay in Redis (which the soak throws away)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from client import Call, Http
from faults import Fault
from infra import HealthMonitor, fetch_health
from model import Window

QUEUE = "chaos-spool"
JOBS = 10_000
BATCH = 1_000
BATCH_TIMEOUT_S = 10.0  # a batch's client time limit (a time-out counts as a hang)
BATCH_ATTEMPTS = 5  # ids are fixed, so a retried batch adds nothing twice
FALLBACK_WAIT_S = 2.0  # at most, for the server to say mode fallback before the batches go
POLL_S = 0.05  # how often the drain is polled
TAIL_S = 5.0  # the recovery window runs until this long after the server was back on redis
MARGIN_S = 2.0  # and the next fault waits this much longer: a request sent in the window ends before it
WINDOW_MAX_S = 15.0  # the injector waits at most this long after the fault for the window to end
# Left out of the recovery latency: waits the client asked for, not the server's slowness.
EXCLUDED = {("job", "fetch"): "job fetches (long polls, wait 1 s)",
            ("lock", "acquire"): "lock acquires (they wait up to 200 ms for a held lock by request)"}
ROWS = ("session", "cache", "job", "lock", "ratelimit", "record")


@dataclass
class SpoolLoad:
    """The spool load of one run: what was sent, what the server said, when it drained."""

    http: Http
    monitor: HealthMonitor
    inst: int  # the server that takes the 10,000 jobs
    fault: Fault | None = None  # the outage they were enqueued in
    fault_no: int = 0  # its 1-based number
    load_start: float | None = None
    load_end: float | None = None  # when the last batch was answered
    mode_at_load: str | None = None  # what /health said just before the first batch
    acked: int = 0  # jobs in batches answered 2xx
    created: int = 0  # of those, answered `created: true`
    batch_calls: list[Call] = field(default_factory=list)
    spooled_seen: int | None = None  # `waiting` the server said, still in fallback, after the batches
    spooled_mode: str | None = None  # the mode /health said right after that
    drained_at: float | None = None  # first poll that saw all of them in Redis (the answer's receipt)
    last_waiting: int | None = None  # the last `waiting` seen on mode redis
    final_waiting: list[int | None] = field(default_factory=list)  # per server, after the traffic
    task: asyncio.Task[None] | None = None

    async def health(self, session: aiohttp.ClientSession) -> str | None:
        mode, _ = await fetch_health(session, self.http.urls[self.inst])
        return mode

    async def waiting(self, op: str, inst: int | None = None) -> int | None:
        where = self.inst if inst is None else inst
        reply = await self.http.request("spool", op, where, "GET", f"/v1/queues/{QUEUE}")
        n = reply.body.get("waiting") if reply.call.ok and isinstance(reply.body, dict) else None
        return n if isinstance(n, int) else None

    async def load(self, fault: Fault, fault_no: int) -> None:
        """Runs while Redis is down: waits (briefly) for the server to fail over, then sends
        the batches, then asks the server how many are waiting (its spool, in fallback)."""
        self.fault, self.fault_no = fault, fault_no
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + FALLBACK_WAIT_S
            mode = await self.health(session)
            while mode != "fallback" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                mode = await self.health(session)
            self.mode_at_load = mode
            self.load_start = time.monotonic()
            for b in range(JOBS // BATCH):
                await self.send_batch(b)
            self.load_end = time.monotonic()
            self.spooled_seen = await self.waiting("stats_in_outage")
            self.spooled_mode = await self.health(session)

    async def send_batch(self, b: int) -> None:
        jobs = [{"id": f"s{n}", "payload": {"n": n}} for n in range(b * BATCH, (b + 1) * BATCH)]
        for _ in range(BATCH_ATTEMPTS):
            reply = await self.http.request("spool", "batch", self.inst, "POST", f"/v1/queues/{QUEUE}/batch",
                                            {"jobs": jobs}, timeout=BATCH_TIMEOUT_S)
            self.batch_calls.append(reply.call)
            if reply.call.ok:
                self.acked += len(jobs)
                self.created += count_created(reply.body)
                return
            await asyncio.sleep(0.1)

    def watch(self) -> None:
        """Starts polling, in the background, for all of them to be in Redis."""
        self.task = asyncio.create_task(self.poll_drain())

    async def poll_drain(self) -> None:
        """Until the server says mode redis before and after a `waiting` of all the jobs (in
        fallback it would answer its spool's count)."""
        async with aiohttp.ClientSession() as session:
            while True:
                if await self.health(session) == "redis":
                    reply = await self.http.request("spool", "stats_drain", self.inst, "GET", f"/v1/queues/{QUEUE}")
                    n = reply.body.get("waiting") if reply.call.ok and isinstance(reply.body, dict) else None
                    if isinstance(n, int) and await self.health(session) == "redis":
                        self.last_waiting = n
                        if n >= self.acked:
                            self.drained_at = reply.call.end
                            return
                await asyncio.sleep(POLL_S)

    async def window_over(self) -> None:
        """Waits until the recovery window has ended — 5 s after the server was back on redis
        (at most WINDOW_MAX_S after the fault) — and MARGIN_S more, so that no other fault
        falls into it or into the requests sent in it (a request over 2 s is a hang)."""
        if self.fault is None:
            return
        end = self.fault.end
        deadline = end + WINDOW_MAX_S
        while time.monotonic() < deadline:
            back = self.monitor.back_on_redis(self.inst, end)
            if back is not None:
                await asyncio.sleep(max(0.0, min(back + TAIL_S, deadline) + MARGIN_S - time.monotonic()))
                return
            await asyncio.sleep(0.05)

    async def finish(self, timeout: float) -> None:
        """After the traffic: gives the drain poll a last chance, then reads the queue on both servers."""
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.task, timeout)
        if self.fault is not None:
            self.final_waiting = [await self.waiting("final_stats", i) for i in range(len(self.http.urls))]


def count_created(body: Any) -> int:
    if not isinstance(body, list):
        return 0
    return sum(1 for e in body if isinstance(e, dict) and e.get("created") is True)


def recovery_window(fault: Fault, inst: int, faults: list[Fault], run_end: float) -> Window:
    """From the fault's end (Redis answering) until 5 s after the server was back on redis,
    cut short by the next fault or the end of the traffic."""
    back = fault.back[inst] if inst < len(fault.back) else None
    end = run_end if back is None else back + TAIL_S
    later = [f.start for f in faults if f.start > fault.start]
    return Window(fault.end, min([end, run_end, *later]))


def counted(call: Call) -> bool:
    """Normal traffic whose latency is the server's: not the spool load or the drain polls,
    not the checks after the traffic, not what waits by request (EXCLUDED)."""
    return call.cap != "spool" and not call.op.startswith("final") and (call.cap, call.op) not in EXCLUDED


def recovery_latency(calls: list[Call], inst: int, window: Window) -> dict[str, list[float]]:
    """Seconds of the counted requests to server `inst` sent within the window: under "all"
    and under their capability."""
    out: dict[str, list[float]] = {name: [] for name in ("all", *ROWS)}
    for c in calls:
        if c.inst == inst and counted(c) and window.holds(c.start):
            out["all"].append(c.seconds)
            out.setdefault(c.cap, []).append(c.seconds)
    return out


@dataclass
class Summary:
    """What the report says about the spool load."""

    load: SpoolLoad
    fault: Fault
    window: Window
    back: float | None  # when the spool server was back on redis
    here: dict[str, list[float]]  # latency on the spool server, by capability
    other: list[dict[str, list[float]]]  # the same window on the other server(s), for comparison


def summarize(load: SpoolLoad, faults: list[Fault], calls: list[Call], run_end: float) -> Summary | None:
    fault = load.fault
    if fault is None:
        return None
    window = recovery_window(fault, load.inst, faults, run_end)
    back = fault.back[load.inst] if load.inst < len(fault.back) else None
    others = [i for i in range(len(load.http.urls)) if i != load.inst]
    return Summary(load, fault, window, back, recovery_latency(calls, load.inst, window),
                   [recovery_latency(calls, i, window) for i in others])
