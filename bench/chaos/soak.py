"""The chaos soak: two `redkit serve` on one redis-server under mixed HTTP traffic while Redis
is faulted; counts what the design promises never happens. See bench/chaos/README.md.

Usage: bench/chaos/run [--duration SECONDS] [--bin PATH] [--out FILE] [--seed N] [--no-faults]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import checks
import explain
import report
import spool
import traffic
from client import Call, Http
from faults import FILLER_KEYS, Fault, Injector
from infra import HealthMonitor, RedisServer, Server, free_port, say, wait_on_redis, wait_settled
from model import Observations

REPO = Path(__file__).resolve().parents[2]
SETTLE_S = 20.0  # for both servers to be on redis with empty journals after the traffic
DRAIN_S = 15.0  # for the workers to process every acknowledged job
STARTUP_S = 60.0


@dataclass
class Rig:
    """Everything the soak starts, so that it can all be stopped."""

    tmp: Path
    redis: RedisServer
    servers: list[Server]

    def close(self) -> None:
        for s in self.servers:
            s.close()
        self.redis.close()

    def drop_data(self) -> None:
        """Removes the stores (keeping logs, findings.md and calls.tsv)."""
        for d in [self.redis.directory, *(s.home / "data" for s in self.servers)]:
            shutil.rmtree(d, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/chaos/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    p.add_argument("--bin", default=str(REPO / "target/debug/redkit"), help="the redkit binary")
    p.add_argument("--out", type=Path, help="also write the markdown report to this file")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    p.add_argument("--no-faults", action="store_true", help="a control run: the same traffic, Redis left alone")
    return p.parse_args(argv)


def scratch_base() -> str | None:
    """/dev/shm when there is one: on a disk, another job's writes can stall Redis's fsync (and
    SQLite's) for a second and open the breakers with no fault injected. What Redis acknowledged
    still survives SIGKILL there: the AOF is written before the reply."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def make_rig(binary: str) -> Rig:
    tmp = Path(tempfile.mkdtemp(prefix="redkit-chaos-", dir=scratch_base()))
    (tmp / "redis").mkdir()
    redis = RedisServer(os.environ.get("REDIS_SERVER", "redis-server"), free_port(), tmp / "redis", tmp / "redis.log")
    servers = [Server(name, binary, free_port(), tmp / name) for name in ("A", "B")]
    return Rig(tmp, redis, servers)


async def start(rig: Rig, with_faults: bool) -> None:
    rig.redis.start()
    answered, _ = await rig.redis.wait_answering(10)
    if not answered:
        raise RuntimeError(f"redis-server did not start; see {rig.redis.log}")
    if with_faults:
        await rig.redis.populate_filler(FILLER_KEYS)
    for s in rig.servers:
        s.start(rig.redis.port)
    for s in rig.servers:
        await wait_on_redis(s, STARTUP_S)


async def watch_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late the soak's own event loop wakes up (a loaded soak could fake hangs)."""
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.05)
        lags.append(time.monotonic() - t - 0.05)


async def finish(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Waits for tasks that were asked to stop; cancels those still running after `timeout`."""
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise RuntimeError("a soak client failed") from task.exception()


async def cancel_others() -> None:
    """Stops every task but this one (clients and watchers left running by an interruption)."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in others:
        t.cancel()
    await asyncio.gather(*others, return_exceptions=True)


async def drain_jobs(obs: Observations, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while checks.lost_jobs(obs) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


async def bounded(limit: int, jobs: list[Coroutine[Any, Any, None]]) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[None]) -> None:
        async with gate:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


async def final_reads(ctx: traffic.Context) -> None:
    """Reads every live session, ended session id, cache key and record on both servers, and
    pages the records' full scan and index queries on both."""
    obs, n = ctx.obs, len(ctx.http.urls)
    jobs = [traffic.read_final(ctx, c, i) for c in obs.chains if c.state == "live" for i in range(n)]
    jobs += [traffic.read_dead(ctx, d, i, final=True) for d in obs.dead for i in range(n)]
    jobs += [traffic.read_cache(ctx, r, i, final=True) for r in obs.cache for i in range(n)]
    jobs += [traffic.read_records(ctx, i) for i in range(n)]
    jobs += [traffic.query_records(ctx, i) for i in range(n)]
    await bounded(16, jobs)


async def job_states(ctx: traffic.Context) -> None:
    for job_id in checks.lost_jobs(ctx.obs):
        reply = await ctx.http.request("job", "final_state", 0, "GET", f"/v1/queues/chaos/jobs/{job_id}")
        state = reply.body.get("state") if isinstance(reply.body, dict) else None
        ctx.obs.job_states[job_id] = state if isinstance(state, str) else reply.call.label


def attribute_recovery(faults: list[Fault], monitor: HealthMonitor, run_end: float) -> None:
    """When each server was back on redis after each fault, and what it said until then."""
    n = len(monitor.urls)
    for f in faults:
        f.back = [monitor.back_on_redis(i, f.end) for i in range(n)]
        until = max((b for b in f.back if b is not None), default=run_end)
        f.modes = ["/".join(sorted(monitor.modes_between(i, f.start, until))) for i in range(n)]


def mode_summary(monitor: HealthMonitor, servers: list[Server]) -> str:
    def one(i: int) -> str:
        return ", ".join(f"{m} ~{v:.0f} s" for m, v in sorted(monitor.mode_seconds(i).items()))

    return " · ".join(f"{s.name}: {one(i)}" for i, s in enumerate(servers))


def write_calls(path: Path, calls: list[Call], t0: float) -> None:
    """Every request, for looking into a run: seconds after the traffic began."""
    rows = [f"{c.cap}\t{c.op}\t{'AB'[c.inst]}\t{c.start - t0:.4f}\t{c.seconds:.4f}\t{c.label}\t{c.target}"
            for c in calls]
    path.write_text("cap\top\tserver\tstart_s\tseconds\toutcome\ttarget\n" + "\n".join(rows) + "\n")


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + (" (work tree modified)" if git("status", "--porcelain", "--untracked-files=no") else "")


def binary_label(binary: str) -> str:
    try:
        built = datetime.datetime.fromtimestamp(Path(binary).stat().st_mtime, datetime.UTC)
    except OSError:
        return binary
    return f"{binary}, built {built:%Y-%m-%d %H:%M} UTC"


@dataclass
class Run:
    """One soak run's live parts."""

    args: argparse.Namespace
    rig: Rig
    seed: int

    async def drive(self, ctx: traffic.Context, workers: list[traffic.Worker], monitor: HealthMonitor,
                    load: spool.SpoolLoad) -> tuple[Injector, float, float]:
        """Runs the clients (and the faults) for the duration; answers the injector, t0, run end."""
        worker_tasks = [asyncio.create_task(w.run()) for w in workers]
        t0 = time.monotonic()
        clients = [asyncio.create_task(c) for c in traffic.clients(ctx)]
        injector = Injector(self.rig.redis, monitor, random.Random(self.seed + 1), load)
        faults = asyncio.create_task(injector.run(t0, self.args.duration)) if not self.args.no_faults else None
        await asyncio.sleep(max(0.0, t0 + self.args.duration - time.monotonic()))
        if faults is not None:
            await faults
        say(f"traffic stopping after {time.monotonic() - t0:.0f} s")
        ctx.stop.set()
        await finish(clients, 5.0)
        run_end = time.monotonic()
        await drain_jobs(ctx.obs, DRAIN_S)
        for w in workers:
            w.stop.set()
        await finish(worker_tasks, 5.0)
        return injector, t0, run_end

    async def execute(self) -> int:
        rig, args = self.rig, self.args
        say(f"logs in {rig.tmp}; seed {self.seed}")
        await start(rig, not args.no_faults)
        http = Http([s.url for s in rig.servers])
        await http.open()
        try:
            return await self.measure(http)
        finally:
            await cancel_others()
            await http.close()

    async def measure(self, http: Http) -> int:
        rig = self.rig
        await traffic.define_policy(http)
        await traffic.define_collection(http)
        ctx = traffic.Context(http, Observations(), asyncio.Event(), random.Random(self.seed))
        monitor = HealthMonitor([s.url for s in rig.servers])
        quiet, lags = asyncio.Event(), [0.0]
        watchers = [asyncio.create_task(monitor.run(quiet)), asyncio.create_task(watch_lag(quiet, lags))]
        load = spool.SpoolLoad(http, monitor, random.Random(self.seed + 2).randrange(len(rig.servers)))
        injector, t0, run_end = await self.drive(ctx, traffic.workers(ctx), monitor, load)
        unsettled = await wait_settled([s.url for s in rig.servers], SETTLE_S)
        say("settled" if not unsettled else f"{unsettled} server(s) not settled after {SETTLE_S:.0f} s")
        await load.finish(5.0)
        await final_reads(ctx)
        await job_states(ctx)
        quiet.set()
        await asyncio.gather(*watchers)
        attribute_recovery(injector.faults, monitor, run_end)
        t = checks.timeline(injector.faults, run_end)
        spooled = spool.summarize(load, injector.faults, http.calls, run_end)
        found = checks.findings(ctx.obs, http.calls, t)
        required = checks.required(found, t, sum(s.panics() for s in rig.servers), unsettled)
        (rig.tmp / "findings.md").write_text(explain.text(found, ctx.obs, t0, t.episodes, None))
        write_calls(rig.tmp / "calls.tsv", http.calls, t0)
        info = await self.info(t0, max(lags), mode_summary(monitor, rig.servers),
                               explain.text(found, ctx.obs, t0, t.episodes, 5))
        self.publish(report.render(info, injector.faults, http.calls, ctx.obs, t, required=required,
                                   reported=checks.reported(ctx.obs, t), spooled=spooled))
        return 0 if all(f.value == 0 for f in required) else 1

    async def info(self, t0: float, lag: float, modes: str, findings: str) -> report.RunInfo:
        return report.RunInfo(
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), commit=git_commit(),
            binary=binary_label(self.args.bin), duration=self.args.duration, seed=self.seed,
            redis_version=await self.rig.redis.version(), with_faults=not self.args.no_faults,
            settings="breaker probes 50–500 ms, Redis socket and connect time-outs 1 s, `RUST_LOG=warn`, other "
                     "settings default; client time limit 2 s (long polls: their wait + 2 s)",
            logs=str(self.rig.tmp), t0=t0, loop_lag_max_s=lag, modes=modes, findings=findings)

    def publish(self, text: str) -> None:
        print(text)
        if self.args.out is not None:
            self.args.out.write_text(text)
            say(f"report written to {self.args.out}")


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not Path(args.bin).is_file():
        say(f"no binary at {args.bin} (build it, or pass --bin)")
        return 2
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    rig = make_rig(args.bin)
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    status = 2
    try:
        status = await Run(args, rig, seed).execute()
        return status
    finally:
        rig.close()
        if status == 0:
            rig.drop_data()
        say(f"stopped redis-server and both servers; logs in {rig.tmp}"
            + ("" if status == 0 else " (stores kept)"))


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(sys.argv[1:])))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(130)
    except Exception:  # the soak itself failed: not a finding, so not exit status 1
        traceback.print_exc()
        sys.exit(2)
