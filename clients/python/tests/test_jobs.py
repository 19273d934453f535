"""Jobs and the Worker: enqueue options, batches, retries, dead letters, heartbeats,
progress, several task types and graceful shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any, List

import pytest

import redkit


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_enqueue_options_and_fetch_order(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    first = await q.enqueue({"n": 1}, id="job-1")
    assert first.id == "job-1" and first.created
    again = await q.enqueue({"n": 1}, id="job-1")
    assert again.id == "job-1" and not again.created  # an id enqueued twice is one job
    u1 = await q.enqueue({"n": 2}, unique_key="daily")
    u2 = await q.enqueue({"n": 3}, unique_key="daily")
    assert u1.created and not u2.created and u2.id == u1.id
    await q.enqueue({"n": "urgent"}, priority=10)
    await q.enqueue({"n": "later"}, delay=30)
    await q.enqueue({"n": "at"}, run_at=time.time() + 30)
    jobs = await q.fetch("w", 10, lease=30)
    assert [j.payload["n"] for j in jobs] == ["urgent", 1, 2]
    assert all(j.attempt == 1 and j.token for j in jobs)
    stats = await q.stats()
    assert stats["active"] == 3 and stats["delayed"] == 2
    for j in jobs:
        assert await j.ack() == "completed"
    info = await q.get("job-1")
    assert info is not None and info.state == "completed" and info.payload == {"n": 1}
    assert await q.get("nope") is None
    assert {j.id for j in await q.list("delayed")} and len(await q.list("completed")) == 3


async def test_batch_is_atomic(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    done = await q.enqueue_batch([{"i": 1}, redkit.JobSpec({"i": 2}, priority=5, id="b2")])
    assert len(done) == 2 and all(e.created for e in done) and done[1].id == "b2"
    with pytest.raises(redkit.InvalidInput):
        await q.enqueue_batch([{"i": 3}, redkit.JobSpec({"i": 4}, priority=5000)])
    assert (await q.stats())["waiting"] == 2


async def test_worker_runs_retries_and_buries(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    seen: List[Any] = []

    async def handler(job: redkit.Job) -> None:
        seen.append((job.payload, job.attempt))
        if job.payload == "bad":
            raise RuntimeError("boom")

    worker = redkit.Worker(rk, q, handler, concurrency=4, poll_wait=0.5)
    run = asyncio.ensure_future(worker.run())
    for i in range(10):
        await q.enqueue(i)
    bad = await q.enqueue("bad", max_attempts=2, backoff=redkit.Backoff.fixed(0.05))

    async def settled() -> bool:
        s = await q.stats()
        return bool(s["completed"] == 10 and s["dead"] == 1)

    await _until(settled)
    await worker.shutdown()
    await run
    assert not worker.running and worker.processed == 10 and worker.failed == 2
    assert sorted(p for p, _ in seen if p != "bad") == list(range(10))
    assert [a for p, a in seen if p == "bad"] == [1, 2]
    dead = await q.dead()
    assert [d.id for d in dead] == [bad.id] and "boom" in (dead[0].last_error or "")
    assert await q.retry_dead(bad.id) == 1
    assert (await q.stats())["waiting"] == 1
    assert await q.purge_dead() == 0


async def test_tasks_and_sync_handlers(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    out: List[str] = []
    worker = redkit.Worker(rk, name, poll_wait=0.5)

    @worker.task("email")
    async def email(job: redkit.Job) -> None:
        out.append(f"email to {job.args['to']}")

    @worker.task()
    def resize(job: redkit.Job) -> None:  # a plain function: run in a thread
        time.sleep(0.05)
        out.append(f"resize {job.args}")

    run = asyncio.ensure_future(worker.run())
    await q.enqueue_task("email", {"to": "ada@example.com"})
    await q.enqueue_task("resize", [640, 480])
    await q.enqueue_task("unknown", 1, max_attempts=1)

    async def settled() -> bool:
        s = await q.stats()
        return bool(s["completed"] == 2 and s["dead"] == 1)

    await _until(settled)
    await worker.shutdown()
    await run
    assert sorted(out) == ["email to ada@example.com", "resize [640, 480]"]
    assert "no handler for task 'unknown'" in ((await q.dead())[0].last_error or "")


async def test_heartbeats_keep_a_long_job_leased_and_progress_is_kept(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    runs: List[int] = []

    async def slow(job: redkit.Job) -> None:
        runs.append(job.attempt)
        await job.set_progress({"step": 1})
        await asyncio.sleep(1.6)  # over two leases of 0.6 s: only heartbeats keep it

    a = redkit.Worker(rk, q, slow, lease=0.6, poll_wait=0.3, name="a")
    b = redkit.Worker(rk, q, slow, lease=0.6, poll_wait=0.3, name="b")
    runs_ab = [asyncio.ensure_future(a.run()), asyncio.ensure_future(b.run())]
    job = await q.enqueue("long")

    async def seen_progress() -> bool:
        info = await q.get(job.id)
        return info is not None and info.progress == {"step": 1}

    await _until(seen_progress)

    async def completed() -> bool:
        info = await q.get(job.id)
        return info is not None and info.state == "completed"

    await _until(completed)
    await asyncio.gather(a.shutdown(), b.shutdown())
    await asyncio.gather(*runs_ab)
    assert runs == [1]  # never handed to the second worker


async def test_shutdown_releases_unfinished_jobs(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    started = asyncio.Event()
    finished: List[str] = []

    async def stuck(job: redkit.Job) -> None:
        started.set()
        await asyncio.sleep(30)

    async def quick(job: redkit.Job) -> None:
        finished.append(job.id)

    first = redkit.Worker(rk, q, stuck, shutdown_timeout=0.2, poll_wait=0.3)
    run = asyncio.ensure_future(first.run())
    job = await q.enqueue("x")
    await asyncio.wait_for(started.wait(), 5)
    t = time.monotonic()
    await first.shutdown()
    await run
    assert time.monotonic() - t < 2
    info = await q.get(job.id)
    assert info is not None and info.state == "waiting"  # released, not failed

    second = redkit.Worker(rk, q, quick, poll_wait=0.3)
    run2 = asyncio.ensure_future(second.run())

    async def done() -> bool:
        return finished == [job.id]

    await _until(done)
    await second.shutdown()
    await run2
    final = await q.get(job.id)
    assert final is not None and final.state == "completed" and final.attempts == 1  # the release did not count


async def test_pause_and_resume(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    await q.enqueue(1)
    await q.pause()
    assert (await q.stats())["paused"] is True
    assert await q.fetch("w", 1) == []
    await q.resume()
    [job] = await q.fetch("w", 1)
    assert await job.fail("nope") in ("retrying", "dead")


async def test_shutdown_lets_a_running_job_finish(rk: redkit.AsyncClient, name: str) -> None:
    q = rk.queue(name)
    started = asyncio.Event()

    async def short(job: redkit.Job) -> None:
        started.set()
        await asyncio.sleep(0.3)

    worker = redkit.Worker(rk, q, short, shutdown_timeout=5, poll_wait=0.3)
    run = asyncio.ensure_future(worker.run())
    job = await q.enqueue("x")
    await asyncio.wait_for(started.wait(), 5)
    await worker.shutdown()  # returns once the job is done and acked
    await run
    info = await q.get(job.id)
    assert info is not None and info.state == "completed" and worker.processed == 1
