"""Pub/sub: publish (idempotent), history, and subscriptions over SSE that resume exactly
after a reconnect — across servers, through a server killed mid-stream."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, List, Union

import pytest

import redkit
from conftest import Cluster, RedisProcess, Server


async def take(sub: redkit.Subscription, n: int, timeout: float = 10.0) -> List[Union[redkit.Message, redkit.Gap]]:
    out: List[Union[redkit.Message, redkit.Gap]] = []

    async def collect() -> None:
        async for event in sub:
            out.append(event)
            if len(out) == n:
                return

    await asyncio.wait_for(collect(), timeout)
    return out


async def test_publish_and_history(rk: redkit.AsyncClient, name: str) -> None:
    ch = rk.channels
    positions = [await ch.publish(name, {"n": i}) for i in range(5)]
    assert [p.offset for p in positions] == [positions[0].offset + i for i in range(5)]
    assert len({p.epoch for p in positions}) == 1
    # The same idempotency key answers the first publication's position.
    once = await ch.publish(name, "x", idempotency_key="k1")
    assert await ch.publish(name, "x", idempotency_key="k1") == once
    page = await ch.history(name, limit=10)
    assert [p.data for p in page.publications] == [{"n": i} for i in range(5)] + ["x"]
    assert page.position == once
    after = await ch.history(name, since=positions[2])
    assert [p.data for p in after.publications] == [{"n": 3}, {"n": 4}, "x"]
    assert [p.data for p in (await ch.history(name, since=positions[2].id, limit=1)).publications] == [{"n": 3}]
    newest = await ch.history(name, limit=2, reverse=True)
    assert [p.data for p in newest.publications] == ["x", {"n": 4}]
    assert (await ch.history(name, limit=0)).publications == []
    with pytest.raises(redkit.Conflict):
        await ch.history(name, since=redkit.Position("another-epoch", 1))
    with pytest.raises(redkit.InvalidInput):
        await ch.history(name, limit=5000)
    with pytest.raises(ValueError):
        redkit.Position.parse("no offset")


async def test_subscribe_live_and_from_a_position(rk: redkit.AsyncClient, name: str) -> None:
    first = await rk.channels.publish(name, "before")
    async with rk.channels.subscribe(name) as sub:
        waiter = asyncio.ensure_future(take(sub, 3))
        await asyncio.sleep(0.3)  # subscribed (from now on: "before" is not replayed)
        for i in range(3):
            await rk.channels.publish(name, {"i": i})
        got = await waiter
    assert [m.data for m in got if isinstance(m, redkit.Message)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [m.offset for m in got] == [first.offset + 1, first.offset + 2, first.offset + 3]
    # From a position: what came after it first, in order.
    async with rk.channels.subscribe(name, since=first) as sub:
        replay = await take(sub, 3)
    assert [m.data for m in replay if isinstance(m, redkit.Message)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    # From a position the history cannot continue (another epoch): a Gap comes first.
    async with rk.channels.subscribe(name, since="lost-epoch:7") as sub:
        waiter = asyncio.ensure_future(take(sub, 2))
        await asyncio.sleep(0.3)
        await rk.channels.publish(name, "after the gap")
        gap, message = await waiter
    assert isinstance(gap, redkit.Gap) and gap.epoch == first.epoch
    assert isinstance(message, redkit.Message) and message.data == "after the gap"


async def test_publish_on_one_server_subscribe_on_another(on_redis: Server, on_redis_2: Server, name: str) -> None:
    async with redkit.AsyncClient(on_redis.url) as a, redkit.AsyncClient(on_redis_2.url) as b:
        async with b.channels.subscribe(name) as sub:
            waiter = asyncio.ensure_future(take(sub, 20))
            await asyncio.sleep(0.3)
            for i in range(20):
                await a.channels.publish(name, i)
            got = await waiter
        assert [m.data for m in got if isinstance(m, redkit.Message)] == list(range(20))


async def test_a_reconnect_resumes_exactly(
    cluster: Cluster, shared_redis: RedisProcess, on_redis_2: Server, name: str
) -> None:
    """The subscriber's server is SIGKILLed mid-stream; publications go on through the other
    one; the subscription reconnects there by itself and misses nothing, repeats nothing."""
    doomed = cluster.server(shared_redis.url)
    async with (
        redkit.AsyncClient(on_redis_2.url) as publisher,
        redkit.AsyncClient([doomed.url, on_redis_2.url], connect_timeout=0.5) as subscriber,
    ):
        sub = subscriber.channels.subscribe(name)
        received: List[Any] = []
        gaps: List[redkit.Gap] = []
        first_ten = asyncio.Event()

        async def follow() -> None:
            async for event in sub:
                if isinstance(event, redkit.Gap):
                    gaps.append(event)
                    continue
                received.append(event.data)
                if len(received) == 10:
                    first_ten.set()
                if len(received) == 30:
                    return

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.3)
        for i in range(10):
            await publisher.channels.publish(name, i)
        await asyncio.wait_for(first_ten.wait(), 10)
        doomed.signal(signal.SIGKILL)
        assert doomed.proc is not None
        doomed.proc.wait()
        doomed.proc = None
        for i in range(10, 30):  # while the subscriber has no connection, then after
            await publisher.channels.publish(name, i)
        await asyncio.wait_for(task, 15)
        await sub.aclose()
        assert received == list(range(30)) and gaps == []
        assert sub.reconnects >= 1


def test_sync_subscribe(embedded: Server, name: str) -> None:
    with redkit.Client(embedded.url) as rk:
        start = rk.channels.publish(name, "zero")
        for i in range(3):
            rk.channels.publish(name, i)
        it = rk.channels.subscribe(name, since=start)
        got = [next(it) for _ in range(3)]
        it.close()  # type: ignore[attr-defined]
        assert [m.data for m in got if isinstance(m, redkit.Message)] == [0, 1, 2]
        assert [p.data for p in rk.channels.history(name, limit=10).publications] == ["zero", 0, 1, 2]


async def test_aclose_from_another_task_ends_the_iteration(rk: redkit.AsyncClient, name: str) -> None:
    sub = rk.channels.subscribe(name)
    got: List[Any] = []
    first = asyncio.Event()

    async def follow() -> None:
        async for event in sub:
            got.append(event.data if isinstance(event, redkit.Message) else event)
            first.set()

    task = asyncio.ensure_future(follow())
    await asyncio.sleep(0.3)
    await rk.channels.publish(name, 1)
    await asyncio.wait_for(first.wait(), 5)
    await sub.aclose()
    await asyncio.wait_for(task, 2)  # ended, not left waiting on a dead stream
    assert got == [1]
