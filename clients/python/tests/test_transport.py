"""The transport: long polls outlive the per-call timeout, a small pool serves many callers,
and a timeout is a typed error."""

from __future__ import annotations

import asyncio
import time

import pytest

import redkit
from conftest import Server


async def test_long_polls_are_not_cut_by_the_timeout(embedded: Server, name: str) -> None:
    async with redkit.AsyncClient(embedded.url, timeout=0.5) as rk:
        t = time.monotonic()
        assert await rk.queue(name).fetch("w", wait=1.5) == []
        assert 1.3 < time.monotonic() - t < 3
        holder = await rk.lock(name, ttl=5).acquire()

        async def release_later() -> None:
            await asyncio.sleep(1.0)
            await holder.release()

        releasing = asyncio.ensure_future(release_later())
        async with rk.lock(name, ttl=5, wait=3) as second:  # waits past the 0.5 s timeout
            assert second.fence > holder.fence
        await releasing


async def test_a_small_pool_serves_many_callers(embedded: Server, name: str) -> None:
    async with redkit.AsyncClient(embedded.url, max_connections=2) as rk:
        c = rk.cache(name)
        await asyncio.gather(*(c.set(str(i), i) for i in range(200)))
        assert len(await c.get_many([str(i) for i in range(200)])) == 200


async def test_a_timeout_is_typed_and_unsafe_calls_are_not_repeated(embedded: Server, name: str) -> None:
    async with redkit.AsyncClient(embedded.url, timeout=0.3, retries=0) as rk:
        async with redkit.AsyncClient(embedded.url) as other:
            await other.lock(name, ttl=5).acquire()
        # The server holds the acquire for its wait; the client gave the call no more time
        # than its own timeout (a lower-level call without the wait added).
        with pytest.raises(redkit.Timeout) as e:
            await rk.call("POST", f"/v1/locks/{name}/acquire", body={"ttl_ms": 1000, "wait_ms": 2000}, safe=False)
        assert isinstance(e.value, redkit.Unavailable)
