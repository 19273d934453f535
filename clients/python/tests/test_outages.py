"""Outages: a server killed under load (failover to the next), Redis SIGKILLed mid-test (the
server falls back to its embedded store and back), a worker riding out a dead server."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any, List

import pytest

import redkit
from conftest import Cluster, RedisProcess, Server, free_port


async def test_an_unreachable_first_url_is_skipped(embedded: Server, name: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with redkit.AsyncClient([dead, embedded.url], connect_timeout=0.5) as rk:
        await rk.cache(name).set("k", 1)
        assert await rk.cache(name).get("k") == 1
        # Unsafe calls fail over too when nothing was sent.
        await rk.ratelimit.define(name, limit=5, period=60)
        assert (await rk.ratelimit.check(name, "k")).remaining == 4
        t = time.monotonic()
        for _ in range(20):  # the dead one is remembered as down: no connect attempt per call
            await rk.cache(name).get("k")
        assert time.monotonic() - t < 1.0
    async with redkit.AsyncClient(dead, connect_timeout=0.5, retries=1) as alone:
        with pytest.raises(redkit.ConnectError) as e:
            await alone.cache(name).get("k")
        assert isinstance(e.value, redkit.Unavailable) and dead in str(e.value)


async def test_failover_when_a_server_is_killed_under_load(
    cluster: Cluster, shared_redis: RedisProcess, on_redis_2: Server, name: str
) -> None:
    doomed = cluster.server(shared_redis.url)
    async with redkit.AsyncClient([doomed.url, on_redis_2.url], timeout=5) as rk:
        c = rk.cache(name)
        errors: List[BaseException] = []
        written: List[int] = []

        async def load(worker: int) -> None:
            for i in range(60):
                k = f"{worker}:{i}"
                try:
                    await c.set(k, i, ttl=60)
                    assert await c.get(k) == i
                    written.append(i)
                except BaseException as e:  # collected: every one is a failure
                    errors.append(e)
                await asyncio.sleep(0.005)

        async def kill_soon() -> None:
            await asyncio.sleep(0.2)
            doomed.signal(signal.SIGKILL)

        await asyncio.gather(*(load(w) for w in range(8)), kill_soon())
        assert errors == [] and len(written) == 480
        assert doomed.proc is not None and doomed.proc.wait(5) == -signal.SIGKILL
        # Everything written before and after is there, through the survivor.
        got = await c.get_many([f"{w}:{i}" for w in range(8) for i in range(60)])
        assert len(got) == 480
    doomed.proc = None


async def test_redis_sigkilled_mid_test(cluster: Cluster, name: str) -> None:
    redis = cluster.redis()
    server = cluster.server(redis.url)
    async with redkit.AsyncClient(server.url, timeout=5) as rk:
        c = rk.cache(name)
        await c.set("before", "b", ttl=300)
        s = await rk.sessions.create({"who": "ada"}, user=name)
        assert s.id is not None
        q = rk.queue(name)
        ran: List[Any] = []

        async def handler(job: redkit.Job) -> None:
            ran.append(job.payload)

        # A fetch in flight when Redis dies may have leased a job whose answer is lost: it
        # comes back when that lease ends (at-least-once), so the lease is short here.
        worker = redkit.Worker(rk, q, handler, poll_wait=0.3, max_backoff=0.5, lease=1.0)
        run = asyncio.ensure_future(worker.run())
        await q.enqueue("before")

        redis.kill()  # SIGKILL, mid-test
        # The server notices and serves from its embedded store: no call fails.
        await c.set("during", "d", ttl=300)
        assert await c.get("during") == "d"
        await rk.sessions.update(s.id, {"during": True})
        await q.enqueue("during")
        await asyncio.to_thread(server.wait_mode, "fallback", 10)
        # Locks fail closed (two holders are worse than none): a typed 503.
        with pytest.raises(redkit.Unavailable) as e:
            async with rk.lock(name, ttl=5):
                pass
        assert e.value.status == 503
        # …unless the caller accepts a host-local lock.
        async with rk.lock(name, ttl=5, local_fallback=True) as lock:
            assert lock.token

        redis.start()  # same port, same AOF
        await asyncio.to_thread(server.wait_mode, "redis", 15)
        assert await c.get("before") == "b"
        # By design a value cached during the outage is dropped on recovery (Redis holds
        # the truth; the next read reloads it), while sessions and jobs carry over.
        assert await c.get("during") is None
        got = await rk.sessions.get(s.id)
        assert got is not None and got.data == {"who": "ada", "during": True}
        async with rk.lock(name, ttl=5) as lock:
            assert lock.fence > 0

        async def all_ran() -> bool:
            return set(ran) == {"before", "during"}  # at least once each

        deadline = time.monotonic() + 15
        while not await all_ran():
            assert time.monotonic() < deadline, ran
            await asyncio.sleep(0.05)
        await worker.shutdown()
        await run


async def test_worker_backs_off_while_its_server_is_down(
    cluster: Cluster, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = cluster.server()
    ran: List[Any] = []

    async def handler(job: redkit.Job) -> None:
        ran.append(job.payload)

    async with redkit.AsyncClient(server.url, timeout=2, connect_timeout=0.3, retries=0) as rk:
        worker = redkit.Worker(rk, name, handler, poll_wait=0.3, max_backoff=0.8)
        run = asyncio.ensure_future(worker.run())
        await asyncio.sleep(0.2)
        server.signal(signal.SIGKILL)
        assert server.proc is not None
        server.proc.wait()
        with caplog.at_level(logging.WARNING, logger="redkit"):
            await asyncio.sleep(2.0)
        failures = [r for r in caplog.records if "fetch failed" in r.getMessage()]
        # Backing off (0.1, 0.2, 0.4, 0.8, 0.8 … s, jittered), not spinning.
        assert 2 <= len(failures) <= 12, len(failures)
        server.start()  # same port and data dir
        await rk.queue(name).enqueue("after the restart")
        deadline = time.monotonic() + 5
        while ran != ["after the restart"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await worker.shutdown()
        await run
