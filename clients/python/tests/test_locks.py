"""Locks and semaphores: fences, waiting, the watchdog, the lost-lease signal."""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

import redkit


async def test_exclusive_with_increasing_fences(rk: redkit.AsyncClient, name: str) -> None:
    fences: List[int] = []
    async with rk.lock(name, ttl=5) as lock:
        assert lock.held and lock.token and lock.fence > 0
        fences.append(lock.fence)
        with pytest.raises(redkit.Conflict) as e:
            async with rk.lock(name, ttl=5):
                pass
        assert e.value.status == 409 and name in e.value.message
    assert not lock.held
    async with rk.lock(name, ttl=5) as again:
        fences.append(again.fence)
    assert fences[1] > fences[0]


async def test_wait_for_the_holder(rk: redkit.AsyncClient, name: str) -> None:
    order: List[str] = []

    async def holder() -> None:
        async with rk.lock(name, ttl=5):
            order.append("first in")
            await asyncio.sleep(0.3)
            order.append("first out")

    task = asyncio.ensure_future(holder())
    await asyncio.sleep(0.05)
    start = time.monotonic()
    async with rk.lock(name, ttl=5, wait=3):
        order.append("second in")
    await task
    assert order == ["first in", "first out", "second in"]
    assert 0.15 < time.monotonic() - start < 2.5


async def test_watchdog_keeps_the_lease_past_its_ttl(rk: redkit.AsyncClient, name: str) -> None:
    async with rk.lock(name, ttl=0.6) as lock:
        await asyncio.sleep(1.5)  # 2.5 leases: only renewals keep it
        with pytest.raises(redkit.Conflict):
            await rk.lock(name, ttl=1).acquire()
        lock.check()
        assert not lock.is_lost
    # Without the watchdog the lease ends on its own.
    unwatched = await rk.lock(name, ttl=0.3, watchdog=False).acquire()
    await asyncio.sleep(0.5)
    async with rk.lock(name, ttl=5) as next_holder:
        assert next_holder.fence > unwatched.fence
    assert await unwatched.release() is False


async def test_lost_lease_is_signalled(rk: redkit.AsyncClient, name: str) -> None:
    lost_calls: List[str] = []
    lock = await rk.lock(name, ttl=0.6, on_lost=lambda lk: lost_calls.append(lk.name)).acquire()
    # Someone ends the lease behind the holder's back (as an expiry during a long pause
    # would) and another caller takes the lock: the next renewal is refused.
    await rk.call("POST", f"/v1/locks/{name}/release", body={"token": lock.token}, safe=True)
    other = await rk.lock(name, ttl=5, watchdog=False).acquire()
    await asyncio.wait_for(lock.lost.wait(), 2)
    assert lock.is_lost and lost_calls == [name]
    with pytest.raises(redkit.LockLost):
        lock.check()
    assert other.fence > lock.fence
    assert await lock.release() is False  # never releases the other holder's lock
    assert await other.release() is True


async def test_semaphore_permits(rk: redkit.AsyncClient, name: str) -> None:
    a = await rk.lock(name, ttl=5, permits=2).acquire()
    b = await rk.lock(name, ttl=5, permits=2).acquire()
    with pytest.raises(redkit.Conflict):
        await rk.lock(name, ttl=5, permits=2).acquire()
    await a.release()
    c = await rk.lock(name, ttl=5, permits=2).acquire()
    await asyncio.gather(b.release(), c.release())


async def test_errors(rk: redkit.AsyncClient, name: str) -> None:
    with pytest.raises(ValueError):
        rk.lock(name, ttl=0)
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.lock(name, ttl=5, permits=0).acquire()
    assert "permits" in e.value.message
    with pytest.raises(redkit.Conflict):
        await rk.call("POST", f"/v1/locks/{name}/extend", body={"token": "nope", "ttl_ms": 1000}, safe=True)
