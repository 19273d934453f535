"""Sessions, on the embedded store and on Redis: create, get, merge, rotate, list, revoke."""

from __future__ import annotations

import asyncio

import pytest

import redkit


async def test_create_get_update_delete(rk: redkit.AsyncClient, name: str) -> None:
    s = await rk.sessions.create({"cart": [1]}, user=name)
    assert s.id and len(s.id) >= 40 and s.user == name and s.data == {"cart": [1]}
    got = await rk.sessions.get(s.id)
    assert got is not None and got.id == s.id and got.data == {"cart": [1]}
    # A merge: fields not named are kept, None removes one.
    merged = await rk.sessions.update(s.id, {"theme": "dark"})
    assert merged.data == {"cart": [1], "theme": "dark"}
    merged = await rk.sessions.update(s.id, {"cart": None})
    assert merged.data == {"theme": "dark"}
    assert await rk.sessions.delete(s.id) is True
    assert await rk.sessions.get(s.id) is None
    assert await rk.sessions.delete(s.id) is False
    with pytest.raises(redkit.NotFound):
        await rk.sessions.update(s.id, {"x": 1})


async def test_concurrent_updates_never_lose_a_field(rk: redkit.AsyncClient, name: str) -> None:
    s = await rk.sessions.create({}, user=name)
    assert s.id is not None
    await asyncio.gather(*(rk.sessions.update(s.id, {f"f{i}": i}) for i in range(20)))
    got = await rk.sessions.get(s.id)
    assert got is not None and got.data == {f"f{i}": i for i in range(20)}


async def test_rotate_ends_the_old_id(rk: redkit.AsyncClient, name: str) -> None:
    s = await rk.sessions.create({"a": 1}, user=name)
    assert s.id is not None
    r = await rk.sessions.rotate(s.id)
    assert r.id and r.id != s.id and r.data == {"a": 1} and r.user == name
    assert await rk.sessions.get(s.id) is None
    assert (await rk.sessions.get(r.id)) is not None


async def test_list_and_revoke_all(rk: redkit.AsyncClient, name: str) -> None:
    ids = {(await rk.sessions.create({"n": i}, user=name)).id for i in range(3)}
    other = await rk.sessions.create({}, user=name + "-other")
    listed = await rk.sessions.list(name)
    assert {s.id for s in listed} == ids
    assert all(s.expires_ms > 0 for s in listed)
    assert await rk.sessions.revoke_all(name) == 3
    assert await rk.sessions.list(name) == []
    for i in ids:
        assert i is not None and await rk.sessions.get(i) is None
    assert other.id is not None and await rk.sessions.get(other.id) is not None


async def test_malformed_and_unknown_ids_read_as_none(rk: redkit.AsyncClient) -> None:
    assert await rk.sessions.get("not a session id") is None
    assert await rk.sessions.get("A" * 43) is None
    assert await rk.sessions.get("../../etc/passwd") is None


async def test_idle_timeout_in_seconds(rk: redkit.AsyncClient, name: str) -> None:
    s = await rk.sessions.create({}, user=name, idle_ttl=1)
    assert s.id is not None and s.idle_ms == 1000
    await asyncio.sleep(1.3)
    assert await rk.sessions.get(s.id) is None


async def test_bad_input_is_invalid_input(rk: redkit.AsyncClient, name: str) -> None:
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.sessions.create({}, user=name, idle_ttl=0)
    assert "idle_ttl" in e.value.message
