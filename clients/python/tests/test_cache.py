"""The cache, on the embedded store and on Redis: values, tags, patterns, get-or-set."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List

import pytest

import redkit
from conftest import Server


async def test_values_round_trip_any_json(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.cache(name)
    values: Dict[str, Any] = {
        "a string": "ada",
        "an/object": {"name": "ada", "langs": ["en", "fr"], "n": 1.5},
        "a list": [1, "two", None, True],
        "ünïcode ✓": 42,
        "with spaces & ?#%": False,
    }
    for k, v in values.items():
        await c.set(k, v, ttl=60)
    for k, v in values.items():
        assert await c.get(k) == v
        assert await c.exists(k)
    assert await c.get("missing") is None
    assert await c.get("missing", "fallback") == "fallback"
    assert not await c.exists("missing")
    assert await c.delete("a string") is True
    assert await c.delete("a string") is False
    assert await c.get("a string") is None


async def test_ttl_in_seconds(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.cache(name)
    await c.set("k", 1, ttl=30)
    left = await c.ttl("k")
    assert left is not None and 29 < left <= 30
    assert await c.ttl("nope") is None
    await c.set("short", 1, ttl=0.2)
    await asyncio.sleep(0.4)
    assert await c.get("short") is None


async def test_many_tags_patterns_clear(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.cache(name)
    assert await c.set_many({f"user:{i}": {"i": i} for i in range(5)}, ttl=60, tags=["users"]) == 5
    await c.set("team:1", "t", ttl=60, tags=["teams"])
    await c.set("team:2", "t", ttl=60)
    got = await c.get_many(["user:0", "user:4", "user:9", "user:0"])
    assert got == {"user:0": {"i": 0}, "user:4": {"i": 4}}
    assert sorted([k async for k in c.keys("user:*")]) == [f"user:{i}" for i in range(5)]
    assert await c.invalidate_tag("users") == 5
    assert await c.get("user:1") is None
    assert await c.invalidate_pattern("team:*") == 2
    await c.set("x", 1)
    assert await c.clear() >= 1
    assert [k async for k in c.keys()] == []


async def test_set_many_in_batches(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.cache(name)
    assert await c.set_many({str(i): i for i in range(1500)}, ttl=60) == 1500
    assert (await c.get_many(["0", "999", "1499"])) == {"0": 0, "999": 999, "1499": 1499}


async def test_errors_are_typed(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.cache(name)
    with pytest.raises(redkit.InvalidInput) as e:
        await c.set("k", 1, ttl=0)
    assert e.value.status == 400 and "ttl" in e.value.message
    with pytest.raises(redkit.TooLarge):
        await c.set("k" * 5000, 1)
    with pytest.raises(redkit.TooLarge):
        await c.set("big", "x" * (2 * 1024 * 1024))
    with pytest.raises(redkit.InvalidInput):
        await c.set("k", 1, tags=[f"t{i}" for i in range(65)])


async def test_cached_loads_once_for_concurrent_callers(rk: redkit.AsyncClient, name: str) -> None:
    calls: List[int] = []

    @rk.cache(name).cached(ttl=60, key="user:{user_id}", tags=["user:{user_id}"])
    async def load_user(user_id: int) -> Dict[str, Any]:
        calls.append(user_id)
        await asyncio.sleep(0.2)
        return {"id": user_id}

    results = await asyncio.gather(*(load_user(7) for _ in range(20)), load_user(8))
    assert results[:20] == [{"id": 7}] * 20 and results[20] == {"id": 8}
    assert sorted(calls) == [7, 8]
    assert await rk.cache(name).get("user:7") == {"id": 7}
    # A hit is one round trip and no load; the tag removes it.
    assert await load_user(7) == {"id": 7} and len(calls) == 2
    assert await rk.cache(name).invalidate_tag("user:7") == 1
    assert await load_user(7) == {"id": 7} and len(calls) == 3


async def test_cached_default_key_and_methods(rk: redkit.AsyncClient, name: str) -> None:
    calls = 0

    class Repo:
        @rk.cache(name).cached(ttl=60)
        async def find(self, a: int, b: str = "x") -> str:
            nonlocal calls
            calls += 1
            return f"{a}{b}"

    repo, other = Repo(), Repo()
    assert await repo.find(1) == "1x"
    assert await other.find(1, b="x") == "1x"  # same arguments, same key (self not in it)
    assert await repo.find(2, "y") == "2y"
    assert calls == 2
    keys = sorted([k async for k in rk.cache(name).keys()])
    assert keys == [
        f"{Repo.find.__module__}.{Repo.find.__qualname__}(1, 'x')",
        f"{Repo.find.__module__}.{Repo.find.__qualname__}(2, 'y')",
    ]


async def test_cached_serves_stale_when_the_loader_fails(rk: redkit.AsyncClient, name: str) -> None:
    fail = False

    @rk.cache(name).cached(ttl=0.3, stale_ttl=60, key="k")
    async def load() -> str:
        if fail:
            raise RuntimeError("database down")
        return "v1"

    assert await load() == "v1"
    await asyncio.sleep(0.5)
    fail = True
    assert await load() == "v1"  # stale, inside the fail-safe window
    # The failed loader released its claim: the next caller loads (and fails again) rather
    # than waiting out the claim's TTL.
    t = time.monotonic()
    assert await load() == "v1"
    assert time.monotonic() - t < 1.0
    fail = False
    assert await load() == "v1"


async def test_cached_without_stale_raises_the_loaders_error(rk: redkit.AsyncClient, name: str) -> None:
    @rk.cache(name).cached(ttl=60, stale_ttl=0, key="k")
    async def load() -> str:
        raise ValueError("no")

    with pytest.raises(ValueError):
        await load()
    assert await rk.cache(name).get("k") is None


async def test_cached_soft_timeout_serves_stale_and_fills_later(rk: redkit.AsyncClient, name: str) -> None:
    version = 1

    @rk.cache(name).cached(ttl=1, stale_ttl=60, key="k", soft_timeout=0.1)
    async def load() -> int:
        if version > 1:
            await asyncio.sleep(0.6)
        return version

    assert await load() == 1
    await asyncio.sleep(1.1)
    version = 2
    t = time.monotonic()
    assert await load() == 1  # the slow loader passed its soft timeout: stale at once
    assert time.monotonic() - t < 0.5
    await asyncio.sleep(0.8)  # it finished in the background and stored its value
    assert await rk.cache(name).get("k") == 2
    assert await load() == 2


async def test_invalidates(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.cache(name)
    db = {1: "ada"}

    @c.cached(ttl=60, key="user:{uid}", tags=["team:{team}"])
    async def user(uid: int, team: int = 7) -> str:
        return db[uid]

    @c.invalidates(["user:{uid}"], tags=["team:{team}"], patterns=["search:*"])
    async def rename(uid: int, new: str, team: int = 7) -> None:
        db[uid] = new

    await c.set("search:a", [1], ttl=60)
    assert await user(1) == "ada"
    await rename(1, "grace")
    assert await user(1) == "grace"
    assert await c.get("search:a") is None


async def test_get_or_set_across_two_instances_loads_once(on_redis: Server, on_redis_2: Server, name: str) -> None:
    """Callers on two servers sharing one Redis: one load per key in all."""
    loads: List[str] = []

    async def loader(who: str) -> str:
        loads.append(who)
        await asyncio.sleep(0.3)
        return "value"

    async with redkit.AsyncClient(on_redis.url) as a, redkit.AsyncClient(on_redis_2.url) as b:
        ca, cb = a.cache(name), b.cache(name)
        results = await asyncio.gather(
            *(ca.get_or_set("k", lambda: loader("a"), 60) for _ in range(5)),
            *(cb.get_or_set("k", lambda: loader("b"), 60) for _ in range(5)),
        )
        assert results == ["value"] * 10
        assert len(loads) == 1, loads
        assert await cb.get("k") == "value"


async def test_claim_protocol_directly(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.cache(name)
    first = await c.claim("k")
    assert first.state == "load" and first.fill_token
    second = await c.claim("k", wait=0)
    assert second.state == "busy" and second.stale is None
    await c.fill("k", {"v": 1}, first.fill_token, ttl=60, stale_ttl=60)
    third = await c.claim("k")
    assert third.state == "fresh" and third.value == {"v": 1}
    again = await c.claim("other")
    assert again.fill_token is not None
    await c.release_claim("other", again.fill_token)
    assert (await c.claim("other", wait=0)).state == "load"


async def test_cached_fails_open_when_redkit_is_unreachable(name: str) -> None:
    from conftest import free_port

    async with redkit.AsyncClient(f"http://127.0.0.1:{free_port()}", retries=0, connect_timeout=0.5) as dead:

        @dead.cache(name).cached(ttl=60)
        async def load() -> str:
            return "direct"

        assert await load() == "direct"
        with pytest.raises(redkit.ConnectError):
            await dead.cache(name).get("k")
