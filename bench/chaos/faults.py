"""Faults injected into Redis while the traffic runs: SIGKILL and restart, SIGSTOP/SIGCONT, and
a restart that answers `LOADING` for a couple of seconds. Kinds cycle with a few seconds of
normal traffic between; every fourth slot is a double: a second fault as soon as the first
server is back on Redis after the first fault (the other is then still probing or replaying).
The first SIGKILL also carries the spool load (spool.py): Redis stays down until its batches
are answered, and the next fault waits until that load's recovery window is over."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infra import HealthMonitor, RedisServer, say

if TYPE_CHECKING:
    from spool import SpoolLoad

KINDS = ("kill", "stop", "loading")
WARMUP_S = 3.0
GAP_S = 4.0  # normal traffic between faults
DOUBLE_WAIT_S = 5.0  # at most, for a server to be back on Redis before the double's second fault
TAIL_S = 6.0  # normal traffic after the last fault
SLOT_BUDGET_S = 4.0  # what one fault takes, for planning
ANSWER_TIMEOUT_S = 60.0
# The LOADING restart: a filler of this many keys in its own database, loaded this slowly.
FILLER_KEYS = 15_000
KEY_LOAD_DELAY_US = 50


@dataclass
class Fault:
    kind: str
    start: float
    end: float = 0.0  # when Redis answered PING again
    answered: bool = False
    loading_seen: bool = False  # a PING answered LOADING (the loading kind must see it)
    filler: int | None = None  # keys in the filler database when restarted into LOADING
    follows: int | None = None  # the fault (1-based) this one was injected right after
    back: list[float | None] = field(default_factory=list)  # per server: first /health sample on redis after `end`
    modes: list[str] = field(default_factory=list)  # per server: the modes /health said until both were back

    @property
    def down_s(self) -> float:
        return self.end - self.start


def slot(i: int) -> list[str]:
    kinds = [KINDS[i % len(KINDS)]]
    if i % 4 == 3:
        kinds.append(KINDS[(i + 1) % len(KINDS)])
    return kinds


@dataclass
class Injector:
    redis: RedisServer
    monitor: HealthMonitor  # says when a server is back on Redis
    rng: random.Random
    spool: SpoolLoad | None = None  # loaded during the first kill (bench/chaos/spool.py)
    faults: list[Fault] = field(default_factory=list)

    async def run(self, t0: float, duration: float) -> None:
        await asyncio.sleep(max(0.0, t0 + WARMUP_S - time.monotonic()))
        i = 0
        while True:
            kinds = slot(i)
            if time.monotonic() + SLOT_BUDGET_S * len(kinds) > t0 + duration - TAIL_S:
                return
            spooled = self.spool is not None and self.spool.fault is not None
            for j, kind in enumerate(kinds):
                if j:
                    await self.first_back()
                await self.inject(kind, follows=len(self.faults) if j else None)
            await asyncio.sleep(GAP_S)
            if self.spool is not None and not spooled and self.spool.fault is not None:
                await self.spool.window_over()  # no other fault in the spool's recovery window
            i += 1

    async def first_back(self) -> None:
        """Waits (a while at most) until the monitor saw a server back on Redis after the last fault."""
        deadline = time.monotonic() + DOUBLE_WAIT_S
        end = self.faults[-1].end
        while time.monotonic() < deadline:
            if any(self.monitor.back_on_redis(i, end) is not None for i in range(len(self.monitor.urls))):
                return
            await asyncio.sleep(0.01)

    async def inject(self, kind: str, follows: int | None) -> None:
        filler = None
        if kind == "loading":  # outside the fault: the base file then holds the filler
            await self.redis.rewrite_aof()
            filler = await self.redis.filler_keys()
        fault = Fault(kind, time.monotonic(), filler=filler, follows=follows)
        self.faults.append(fault)
        if kind == "kill":
            await self.kill(fault)
        elif kind == "stop":
            await self.stop()
        else:
            self.restart_loading()
        fault.answered, fault.loading_seen = await self.redis.wait_answering(ANSWER_TIMEOUT_S)
        fault.end = time.monotonic()
        say(f"fault {len(self.faults)}: {kind}, Redis answering again after {fault.down_s:.1f} s"
            + (f" (LOADING seen: {'yes' if fault.loading_seen else 'NO'})" if kind == "loading" else ""))
        if self.spool is not None and self.spool.fault is fault and self.spool.acked:
            self.spool.watch()

    async def kill(self, fault: Fault) -> None:
        self.redis.kill()
        down = self.rng.uniform(2.0, 3.0)
        if self.spool is not None and self.spool.fault is None:  # Redis stays down until the jobs are in
            await asyncio.gather(asyncio.sleep(down), self.spool.load(fault, len(self.faults)))
            say(f"spool: {self.spool.acked} jobs enqueued on {'AB'[self.spool.inst]} during fault "
                f"{len(self.faults)} (the server said {self.spool.spooled_seen} waiting)")
        else:
            await asyncio.sleep(down)
        self.redis.start()

    async def stop(self) -> None:
        self.redis.signal(signal.SIGSTOP)
        await asyncio.sleep(self.rng.uniform(2.0, 3.0))
        self.redis.signal(signal.SIGCONT)

    def restart_loading(self) -> None:
        self.redis.kill()
        self.redis.start(KEY_LOAD_DELAY_US)
