"""Records, capped lists and time-bucketed counters, on the embedded store and on Redis:
collections, versioned writes (409 on ``if_version``), get_many, queries paged through their
cursor, redaction, list caps, counter series with their zero buckets and label sets."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, Iterator, List, Set

import pytest

import redkit
from conftest import Cluster, RedisProcess, Server

# The server hashes with a deployment key; without one a `hash` rule is refused.
REDACT_KEY = "0123456789abcdef" * 4
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def now_ms() -> int:
    return int(time.time() * 1000)


# --- servers with a redaction key ---------------------------------------------------------------
@pytest.fixture(scope="session")
def redacting_embedded(cluster: Cluster) -> Server:
    return cluster.server(env={"REDKIT_REDACT_KEY": REDACT_KEY})


@pytest.fixture(scope="session")
def redacting_on_redis(cluster: Cluster, shared_redis: RedisProcess) -> Server:
    return cluster.server(shared_redis.url, env={"REDKIT_REDACT_KEY": REDACT_KEY})


@pytest.fixture(params=["embedded", "redis"])
async def rk_redacting(request: pytest.FixtureRequest) -> Any:
    name = "redacting_embedded" if request.param == "embedded" else "redacting_on_redis"
    srv: Server = request.getfixturevalue(name)
    async with redkit.AsyncClient(srv.url, timeout=10) as client:
        yield client


# --- collections --------------------------------------------------------------------------------
async def test_define_info_list_drop(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    assert rk.collection(name) is c
    assert await c.info() is None
    info = await c.define({"status": "equal", "score": "range"}, ttl=3600, max_bytes=4096)
    assert isinstance(info, redkit.CollectionInfo)
    assert info.name == name and info.ttl == 3600 and info.max_bytes == 4096 and info.count == 0
    assert [(i.field, i.kind, i.state) for i in info.indexes] == [
        ("status", "equal", "ready"),
        ("score", "range", "ready"),
    ]
    status_index = info.index("status")
    assert status_index is not None and status_index.ready and info.index("score", "equal") is None
    assert info.redact == []

    # Defaults: 90 days, 64 KiB, no indexes.
    other = rk.collection(name + "-b")
    plain = await other.define()
    assert plain.ttl == 7_776_000 and plain.max_bytes == 65_536 and plain.indexes == []

    for i in range(3):
        await c.put(f"r{i}", {"status": "open", "score": i})
    got = await c.info()
    assert got is not None and got.count == 3 and got.name == name
    listed = {x.name: x for x in await rk.collections.list()}
    assert {name, name + "-b"} <= set(listed)
    assert listed[name].count == 3 and listed[name].index("score", "range") is not None

    await c.drop()
    assert await c.info() is None
    assert name not in {x.name for x in await rk.collections.list()}
    # Records of an undefined collection: NotFound, not a miss.
    with pytest.raises(redkit.NotFound) as e:
        await c.get("r0")
    assert e.value.status == 404
    with pytest.raises(redkit.NotFound):
        await c.put("r0", {"a": 1})
    with pytest.raises(redkit.NotFound):
        await c.query()
    # Defined again: empty (the drop removed every record).
    await c.define({"status": "equal"})
    assert await c.get("r0") is None
    info2 = await c.info()
    assert info2 is not None and info2.count == 0
    await c.drop()
    await c.drop()  # dropping an undefined collection is not an error
    await other.drop()


async def test_definition_errors_name_their_field(rk: redkit.AsyncClient, name: str) -> None:
    with pytest.raises(redkit.InvalidInput):
        await rk.collection("bad name!").define()
    with pytest.raises(redkit.InvalidInput):
        await rk.collection("x" * 65).define()
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.collection(name).define([{"field": "score", "kind": "fuzzy"}])
    assert "kind" in e.value.message or "indexes" in e.value.message
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.collection(name).define({"$status": "equal"})
    assert "indexes" in e.value.message
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.collection(name).define(redact=[{"field": "*", "action": "drop"}])
    assert "redact" in e.value.message
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.collection(name).define(max_bytes=0)
    assert "max_bytes" in e.value.message
    assert await rk.collection(name).info() is None


async def test_hash_needs_a_redaction_key(rk: redkit.AsyncClient, name: str) -> None:
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.collection(name).define(redact=[redkit.Redact.hash("email")])
    assert "redact" in e.value.message


# --- records ------------------------------------------------------------------------------------
async def test_put_get_patch_delete(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define(ttl=0)
    w = await c.put("ada", {"name": "Ada", "langs": ["en", "fr"], "n": 1.5, "nested": {"a": None}})
    assert isinstance(w, redkit.Written) and w.id == "ada" and w.version >= 1
    r = await c.get("ada")
    assert isinstance(r, redkit.Record)
    assert r.id == "ada" and r.version == w.version and r.expires_at_ms is None
    assert r.data == {"name": "Ada", "langs": ["en", "fr"], "n": 1.5, "nested": {"a": None}}
    assert await c.get("nobody") is None

    # A put replaces the whole record.
    w2 = await c.put("ada", {"name": "Ada L."})
    assert w2.version > w.version
    got = await c.get("ada")
    assert got is not None and got.data == {"name": "Ada L."}

    # A patch merges top-level fields; None removes one.
    w3 = await c.patch("ada", {"born": 1815, "title": "Countess"})
    assert w3.id == "ada" and w3.version > w2.version
    got = await c.get("ada")
    assert got is not None and got.data == {"name": "Ada L.", "born": 1815, "title": "Countess"}
    await c.patch("ada", {"title": None})
    got = await c.get("ada")
    assert got is not None and got.data == {"name": "Ada L.", "born": 1815}
    with pytest.raises(redkit.NotFound) as e:
        await c.patch("nobody", {"x": 1})
    assert e.value.status == 404

    await c.delete("ada")
    assert await c.get("ada") is None
    await c.delete("ada")  # absent: still fine
    await c.drop()


async def test_ids_of_any_bytes(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define()
    ids = ["a/b", "with spaces & ?#%", "ünïcode ✓", "x" * 256, "..", "a:b:c", "collection x is not defined"]
    for i, rid in enumerate(ids):
        await c.put(rid, {"i": i})
    for i, rid in enumerate(ids):
        got = await c.get(rid)
        assert got is not None and got.id == rid and got.data == {"i": i}
    assert [r.id if r else None for r in await c.get_many(ids)] == ids
    for rid in ids:  # absent: a miss, whatever the id says
        await c.delete(rid)
        assert await c.get(rid) is None
    with pytest.raises(redkit.InvalidInput):
        await c.put("x" * 257, {"i": 0})
    with pytest.raises(redkit.InvalidInput):
        await c.put("tab\there", {"i": 0})
    await c.drop()


async def test_ids_named_like_the_collection_routes(rk: redkit.AsyncClient, name: str) -> None:
    """``get`` and ``query`` are valid record ids (1-256 bytes, no control characters), though
    ``POST /v1/records/{c}/get`` and ``/query`` are routes of their own."""
    c = rk.collection(name)
    await c.define()
    for rid in ("get", "query"):
        w = await c.put(rid, {"id": rid})
        got = await c.get(rid)
        assert got is not None and got.data == {"id": rid} and got.version == w.version
        await c.patch(rid, {"more": True})
        assert (await c.incr(rid, "n")).value == 1
        await c.delete(rid)
        assert await c.get(rid) is None
    await c.drop()


async def test_data_rules(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define({"status": "equal", "score": "range"}, max_bytes=200)
    with pytest.raises(redkit.InvalidInput) as e:
        await c.put("a", {"$secret": 1})
    assert "$secret" in e.value.message
    with pytest.raises(redkit.InvalidInput):
        await c.put("a", {"x": None})  # null only removes a field in a patch
    with pytest.raises(redkit.InvalidInput) as e:
        await c.put("a", {"status": {"nested": True}})  # an equal index takes scalars
    assert "status" in e.value.message
    with pytest.raises(redkit.InvalidInput) as e:
        await c.put("a", {"score": "high"})  # a range index takes numbers
    assert "score" in e.value.message
    with pytest.raises(redkit.TooLarge) as big:
        await c.put("a", {"blob": "x" * 300})
    assert big.value.status == 413
    await c.drop()


async def test_a_patch_cannot_grow_a_record_past_max_bytes(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define(max_bytes=200)
    await c.put("a", {"blob": "x" * 100})
    try:
        with pytest.raises(redkit.TooLarge):
            await c.patch("a", {"more": "y" * 150})  # the patch fits; the record it makes does not
        got = await c.get("a")
        assert got is not None and got.data == {"blob": "x" * 100}
    finally:
        await c.drop()


async def test_if_version_conflicts_are_409(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define()
    w1 = await c.create("doc", {"v": 1})
    with pytest.raises(redkit.Conflict) as e:
        await c.create("doc", {"v": "again"})  # if_version 0: only when absent
    assert e.value.status == 409 and type(e.value) is redkit.Conflict
    with pytest.raises(redkit.Conflict):
        await c.put("doc", {"v": 2}, if_version=w1.version + 5)
    got = await c.get("doc")
    assert got is not None and got.data == {"v": 1} and got.version == w1.version

    w2 = await c.put("doc", {"v": 2}, if_version=w1.version)
    assert w2.version > w1.version
    with pytest.raises(redkit.Conflict) as e:
        await c.patch("doc", {"stale": True}, if_version=w1.version)
    assert e.value.status == 409
    w3 = await c.patch("doc", {"fresh": True}, if_version=w2.version)
    assert w3.version > w2.version
    got = await c.get("doc")
    assert got is not None and got.data == {"v": 2, "fresh": True} and got.version == w3.version

    # Optimistic concurrency: of writers that all read one version, exactly one wins.
    results = await asyncio.gather(
        *(c.put("doc", {"writer": i}, if_version=w3.version) for i in range(8)), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, redkit.Written)]
    assert len(wins) == 1 and all(isinstance(r, redkit.Conflict) for r in results if r not in wins)

    # Deleted: a create works again; an if_version of the old one conflicts.
    await c.delete("doc")
    with pytest.raises(redkit.Conflict):
        await c.put("doc", {"v": 3}, if_version=wins[0].version)
    assert (await c.create("doc", {"v": 4})).version >= 1
    await c.drop()


async def test_incr(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define()
    first = await c.incr("views", "count", 5)
    assert isinstance(first, redkit.Incremented) and first.value == 5
    got = await c.get("views")
    assert got is not None and got.data == {"count": 5} and got.version == first.version
    second = await c.incr("views", "count")
    assert second.value == 6 and second.version > first.version
    assert (await c.incr("views", "count", -10)).value == -4
    assert (await c.incr("views", "other", 2)).value == 2
    got = await c.get("views")
    assert got is not None and got.data == {"count": -4, "other": 2}
    await asyncio.gather(*(c.incr("views", "count") for _ in range(20)))
    got = await c.get("views")
    assert got is not None and got.data["count"] == 16

    await c.put("doc", {"title": "text", "ratio": 1.5})
    with pytest.raises(redkit.Conflict) as e:
        await c.incr("doc", "title")
    assert e.value.status == 409
    with pytest.raises(redkit.Conflict):
        await c.incr("doc", "ratio")
    got = await c.get("doc")
    assert got is not None and got.data == {"title": "text", "ratio": 1.5}
    await c.drop()


async def test_get_many(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define()
    for i in range(5):
        await c.put(f"k{i}", {"i": i})
    got = await c.get_many(["k3", "missing", "k0", "k3"])
    assert [r.data["i"] if r else None for r in got] == [3, None, 0, 3]
    assert got[0] is not None and got[0].id == "k3" and got[0].version >= 1
    assert await c.get_many([]) == []
    # More than one call's worth (1000 ids): split, still in order.
    ids = [f"k{i}" for i in range(1500)]
    many = await c.get_many(ids)
    assert len(many) == 1500
    assert [r.id for r in many if r is not None] == [f"k{i}" for i in range(5)]
    assert all(r is None for r in many[5:])
    with pytest.raises(redkit.InvalidInput):
        await rk.call("POST", f"/v1/records/{name}/get", body={"ids": ids[:1001]}, safe=True)
    await c.drop()


async def test_query_pages_to_the_end(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define({"status": "equal", "score": "range", "team": "equal"})
    for i in range(25):
        data: Dict[str, Any] = {"status": "open" if i % 2 == 0 else "closed", "score": i * 1.5, "team": i % 3}
        await c.put(f"r{i:02d}", data)
    await c.put("unscored", {"status": "open"})  # absent from the range index

    # By hand through the cursor: every open record once, by id, pages of at most 4.
    seen: List[str] = []
    cursor = None
    pages = 0
    while True:
        page = await c.query({"status": "open"}, limit=4, cursor=cursor)
        assert isinstance(page, redkit.RecordPage) and len(page) <= 4
        seen += [r.id for r in page]
        pages += 1
        if page.cursor is None:
            break
        cursor = page.cursor
        assert pages < 50
    open_ids = sorted([f"r{i:02d}" for i in range(0, 25, 2)] + ["unscored"])
    assert seen == open_ids and pages >= 4
    # The same through scan, and descending.
    assert [r.id async for r in c.scan({"status": "open"}, page=3)] == open_ids
    assert [r.id async for r in c.scan({"status": "open"}, order="desc", page=5)] == open_ids[::-1]
    # Every record, no condition (by id); a single page.
    everything = [r.id async for r in c.scan(page=7)]
    assert everything == sorted([f"r{i:02d}" for i in range(25)] + ["unscored"])
    one = await c.query(limit=1000)
    assert [r.id for r in one] == everything and one.cursor is None
    # Two equal conditions.
    assert [r.id async for r in c.scan({"status": "closed", "team": 0})] == ["r03", "r09", "r15", "r21"]

    # A range, ordered by its field, both ends inclusive.
    in_range = [r async for r in c.scan(range=redkit.Range("score", min=6, max=18), page=2)]
    assert [r.data["score"] for r in in_range] == [i * 1.5 for i in range(4, 13)]
    desc = [r async for r in c.scan(range={"field": "score", "min": 30}, order="desc", page=2)]
    assert [r.data["score"] for r in desc] == [i * 1.5 for i in range(24, 19, -1)]
    upto = await c.query(range=redkit.Range("score", max=3), limit=10)
    assert [r.id for r in upto] == ["r00", "r01", "r02"] and upto.cursor is None
    # A range and an equal condition together.
    both = [r.id async for r in c.scan({"status": "closed"}, range=redkit.Range("score", min=10), page=2)]
    assert both == [f"r{i:02d}" for i in range(7, 25, 2)]
    # Nothing matches: an empty last page.
    none = await c.query({"status": "archived"})
    assert none.records == [] and none.cursor is None
    await c.drop()


async def test_query_errors_name_the_field(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define({"status": "equal", "score": "range"})
    await c.put("a", {"status": "open", "score": 1, "colour": "red"})
    with pytest.raises(redkit.InvalidInput) as e:
        await c.query({"colour": "red"})  # no index
    assert "colour" in e.value.message
    with pytest.raises(redkit.InvalidInput) as e:
        await c.query(range=redkit.Range("status", min=0))  # an equal index, not a range one
    assert "status" in e.value.message
    with pytest.raises(redkit.InvalidInput) as e:
        await c.query({"score": 1})  # a range index, not an equal one
    assert "score" in e.value.message
    with pytest.raises(redkit.InvalidInput) as e:
        await c.query(limit=1001)
    assert "limit" in e.value.message
    with pytest.raises(redkit.InvalidInput):
        await c.query(limit=0)
    with pytest.raises(redkit.InvalidInput) as e:
        await c.query(order="sideways")
    assert "order" in e.value.message
    with pytest.raises(redkit.InvalidInput):
        await c.query(cursor="not a cursor")
    await c.drop()


async def test_an_index_added_later_indexes_existing_records(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define()
    for i in range(60):
        await c.put(f"r{i:02d}", {"kind": "even" if i % 2 == 0 else "odd", "n": i})
    info = await c.define({"kind": "equal", "n": "range"})
    assert {i.state for i in info.indexes} <= {"ready", "building"}
    deadline = time.monotonic() + 20
    while not all(i.ready for i in info.indexes):
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.1)
        got = await c.info()
        assert got is not None
        info = got
    assert [r.id async for r in c.scan({"kind": "odd"})] == [f"r{i:02d}" for i in range(1, 60, 2)]
    assert [r.data["n"] async for r in c.scan(range=redkit.Range("n", min=55))] == [55, 56, 57, 58, 59]
    # Writes after the redefinition are indexed too; an index removed is refused.
    await c.put("late", {"kind": "odd", "n": 100})
    assert "late" in [r.id for r in await c.query({"kind": "odd"}, limit=1000)]
    await c.define({"n": "range"})
    with pytest.raises(redkit.InvalidInput):
        await c.query({"kind": "odd"})
    await c.drop()


async def test_ttl(rk: redkit.AsyncClient, name: str) -> None:
    c = rk.collection(name)
    await c.define({"status": "equal"}, ttl=1)
    before = now_ms()
    await c.put("short", {"status": "open"})
    got = await c.get("short")
    assert got is not None and got.expires_at_ms is not None
    assert before + 500 <= got.expires_at_ms <= now_ms() + 1500
    await asyncio.sleep(1.5)
    assert await c.get("short") is None
    assert await c.get_many(["short"]) == [None]
    assert [r.id async for r in c.scan({"status": "open"})] == []
    with pytest.raises(redkit.NotFound):
        await c.patch("short", {"x": 1})
    await c.drop()

    # The default: 90 days, refreshed by each write.
    d = rk.collection(name + "-d")
    await d.define()
    await d.put("long", {"a": 1})
    got = await d.get("long")
    assert got is not None and got.expires_at_ms is not None
    assert abs(got.expires_at_ms - (now_ms() + 7_776_000_000)) < 60_000
    await d.drop()


async def test_redaction_is_visible_in_reads(rk_redacting: redkit.AsyncClient, name: str) -> None:
    rk = rk_redacting
    c = rk.collection(name)
    info = await c.define(
        {"email": "equal"},
        redact=[
            redkit.Redact.hash("email"),
            redkit.Redact.mask("card", keep_last=4),
            redkit.Redact.drop("password"),
            redkit.Redact.scrub("*", ["email", "ip", "bearer"]),
        ],
    )
    assert [r["action"] for r in info.redact] == ["hash", "mask", "drop", "scrub"]
    raw = {
        "email": "ada@example.com",
        "card": "4111111111114242",
        "password": "hunter2",
        "note": "mail bob@example.org from 10.1.2.3, auth: Bearer abc.def-ghi",
        "name": "Ada",
    }
    await c.put("ada", raw)
    await c.put("ada2", {"email": "ada@example.com"})
    await c.put("bob", {"email": "bob@example.org"})
    got = await c.get("ada")
    assert got is not None
    text = repr(got.raw)
    for secret in ("ada@example.com", "4111111111", "hunter2", "bob@example.org", "10.1.2.3", "abc.def-ghi"):
        assert secret not in text, (secret, got.raw)
    assert set(got.data) == {"email", "card", "note", "name"}  # the password was dropped
    email = got.data["email"]
    assert isinstance(email, str) and email != raw["email"] and "@" not in email  # a hash, not the value
    assert got.data["card"] == "*" * 12 + "4242"
    assert got.data["name"] == "Ada"
    assert "[email]" in got.data["note"] and "[ip]" in got.data["note"] and "Bearer [token]" in got.data["note"]
    # Equal values, equal hashes (so they link, and the index finds them by the hash).
    ada2, bob = await c.get_many(["ada2", "bob"])
    assert ada2 is not None and bob is not None
    assert ada2.data["email"] == email and bob.data["email"] != email
    assert [r.id async for r in c.scan({"email": email})] == ["ada", "ada2"]
    # Patches are redacted too, and query results come back redacted.
    await c.patch("bob", {"password": "pw", "card": "5500000000000004"})
    got = await c.get("bob")
    assert got is not None and "password" not in got.data and got.data["card"] == "*" * 12 + "0004"
    assert all("@" not in r.data["email"] for r in (await c.query(limit=10)).records)
    await c.drop()


# --- capped lists -------------------------------------------------------------------------------
async def test_lists_push_newest_first_and_cap(rk: redkit.AsyncClient, name: str) -> None:
    lists = rk.lists
    assert await lists.push(name, [1, 2, 3], cap=10) == 3
    page = await lists.get(name)
    assert isinstance(page, redkit.ListPage) and page.items == [3, 2, 1] and page.length == 3
    assert await lists.push(name, [{"a": [1, None]}, "b"], cap=10) == 5
    assert (await lists.get(name)).items == ["b", {"a": [1, None]}, 3, 2, 1]
    # The cap trims the oldest, in the same step as the push.
    assert await lists.push(name, ["c", "d", "e"], cap=4) == 4
    page = await lists.get(name)
    assert page.items == ["e", "d", "c", "b"] and page.length == 4
    # Paging: offset and limit, length of the whole list.
    page = await lists.get(name, offset=1, limit=2)
    assert page.items == ["d", "c"] and page.length == 4
    assert (await lists.get(name, offset=10)).items == []
    # A push longer than the cap keeps its newest items.
    assert await lists.push(name, list(range(10)), cap=3) == 3
    assert (await lists.get(name)).items == [9, 8, 7]
    await lists.delete(name)
    page = await lists.get(name)
    assert page.items == [] and page.length == 0
    await lists.delete(name)  # absent: still fine


async def test_lists_concurrent_pushes_never_pass_the_cap(rk: redkit.AsyncClient, name: str) -> None:
    lengths = await asyncio.gather(*(rk.lists.push(name, [i] * 3, cap=7) for i in range(20)))
    assert all(1 <= n <= 7 for n in lengths)
    page = await rk.lists.get(name, limit=100)
    assert page.length == 7 and len(page.items) == 7
    await rk.lists.delete(name)


async def test_lists_ttl_and_errors(rk: redkit.AsyncClient, name: str) -> None:
    async def sleep_until(t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.monotonic()))

    await rk.lists.push(name, ["x"], cap=5, ttl=2)
    x_pushed = time.monotonic()  # the list would end by x_pushed + 2 s without another push
    await asyncio.sleep(1.0)
    y_sent = time.monotonic()
    await rk.lists.push(name, ["y"], cap=5, ttl=2)  # refreshes the TTL: ends after y_sent + 2 s
    y_pushed = time.monotonic()
    assert y_pushed < x_pushed + 1.8, "the machine is too slow for this test's timing"
    await sleep_until(x_pushed + 2.2)
    assert time.monotonic() < y_sent + 1.8
    assert (await rk.lists.get(name)).items == ["y", "x"]
    await sleep_until(y_pushed + 2.2)
    page = await rk.lists.get(name)
    assert page.items == [] and page.length == 0

    with pytest.raises(redkit.InvalidInput) as e:
        await rk.lists.push(name, [1], cap=0)
    assert "cap" in e.value.message
    with pytest.raises(redkit.InvalidInput):
        await rk.lists.push(name, [1], cap=100_001)
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.lists.push(name, [], cap=5)
    assert "items" in e.value.message
    with pytest.raises((redkit.InvalidInput, redkit.TooLarge)):
        await rk.lists.push(name, list(range(1001)), cap=5)
    with pytest.raises(redkit.InvalidInput):
        await rk.lists.push("bad name!", [1], cap=5)
    with pytest.raises(TypeError):
        await rk.lists.push(name, "not a list", cap=5)


# --- counters -----------------------------------------------------------------------------------
async def test_counters_series_with_zeros(rk: redkit.AsyncClient, name: str) -> None:
    counters = rk.counters
    t0 = (now_ms() // MINUTE - 10) * MINUTE  # a whole minute, ten minutes ago
    v = await counters.incr(name, 2, at=t0 / 1000)
    assert isinstance(v, redkit.CounterValues) and v.minute == 2 and v.hour >= 2 and v.day >= 2
    v = await counters.incr(name, 3, at=(t0 + 2 * MINUTE + 30_000) / 1000)
    assert v.minute == 3
    v = await counters.incr(name, at=(t0 + 2 * MINUTE + 59_000) / 1000)  # by 1
    assert v.minute == 4

    series = await counters.range(name, "minute", start=t0 / 1000, end=(t0 + 4 * MINUTE) / 1000)
    assert isinstance(series, redkit.Series) and series.granularity == "minute"
    assert [b.start_ms for b in series] == [t0 + i * MINUTE for i in range(5)]
    assert series.values == [2, 0, 4, 0, 0] and series.total == 6
    assert series.buckets[0].start.timestamp() * 1000 == t0

    # Hours and days hold the same counts.
    hour0, hour1 = (t0 // HOUR) * HOUR, ((t0 + 4 * MINUTE) // HOUR) * HOUR
    hours = await counters.range(name, "hour", start=hour0 / 1000, end=hour1 / 1000)
    assert hours.granularity == "hour" and hours.buckets[0].start_ms == hour0 and hours.total == 6
    day0 = (t0 // DAY) * DAY - 2 * DAY
    days = await counters.range(name, "day", start=day0 / 1000, end=now_ms() / 1000)
    assert [b.start_ms for b in days][:3] == [day0, day0 + DAY, day0 + 2 * DAY]
    assert days.values[:2] == [0, 0] and days.total == 6

    # The default span: the last 60 or so minutes up to now, with the increments in it.
    recent = await counters.range(name)
    assert 60 <= len(recent) <= 61 and recent.total == 6
    starts = [b.start_ms for b in recent]
    assert starts == sorted(starts) and all(b - a == MINUTE for a, b in zip(starts, starts[1:]))
    assert starts[-1] <= now_ms() < starts[-1] + 2 * MINUTE

    # A counter never counted: zeros.
    empty = await counters.range(name + "-none", "minute", start=t0 / 1000, end=(t0 + 2 * MINUTE) / 1000)
    assert empty.values == [0, 0, 0]

    with pytest.raises(redkit.InvalidInput) as e:
        await counters.range(name, "week")
    assert "granularity" in e.value.message
    with pytest.raises(redkit.InvalidInput):  # more than 1500 buckets
        await counters.range(name, "minute", start=(t0 - 2000 * MINUTE) / 1000, end=t0 / 1000)
    with pytest.raises(redkit.InvalidInput):
        await counters.incr("bad name!")


async def test_counters_labels(rk: redkit.AsyncClient, name: str) -> None:
    counters = rk.counters
    t0 = (now_ms() // MINUTE - 5) * MINUTE
    at = t0 / 1000
    a = {"route": "/login", "status": "200"}
    b = {"route": "/login", "status": "500"}
    assert (await counters.incr(name, 3, labels=a, at=at)).minute == 3
    assert (await counters.incr(name, 1, labels=b, at=at)).minute == 1
    assert (await counters.incr(name, 2, labels=dict(reversed(list(a.items()))), at=at)).minute == 5
    assert (await counters.incr(name, 10, at=at)).minute == 16  # no labels: the total

    def span(s: redkit.Series) -> List[int]:
        return s.values

    end = (t0 + MINUTE) / 1000
    assert span(await counters.range(name, start=at, end=end, labels=a)) == [5, 0]
    assert span(await counters.range(name, start=at, end=end, labels=b)) == [1, 0]
    assert span(await counters.range(name, start=at, end=end)) == [16, 0]  # every increment counts in the total
    assert span(await counters.range(name, start=at, end=end, labels={"route": "/other"})) == [0, 0]

    def as_set(sets: List[Dict[str, str]]) -> Set[frozenset[tuple[str, str]]]:
        return {frozenset(s.items()) for s in sets if s}

    labels = await counters.labels(name)
    assert as_set(labels) == as_set([a, b]) and len(labels) == 2
    assert await counters.labels(name + "-none") == []

    # At most 8 labels of 1-64 bytes.
    with pytest.raises(redkit.InvalidInput) as e:
        await counters.incr(name, labels={f"k{i}": "v" for i in range(9)})
    assert "labels" in e.value.message
    with pytest.raises(redkit.InvalidInput):
        await counters.incr(name, labels={"k" * 65: "v"})
    with pytest.raises(redkit.InvalidInput):
        await counters.incr(name, labels={"k": ""})


async def test_counters_label_sets_are_capped_at_100(rk: redkit.AsyncClient, name: str) -> None:
    counters = rk.counters
    for i in range(100):
        await counters.incr(name, labels={"user": f"u{i}"})
    with pytest.raises(redkit.InvalidInput) as e:
        await counters.incr(name, labels={"user": "u100"})
    assert "labels" in e.value.message and e.value.status == 400
    # A label set already seen still counts; so does the total.
    assert (await counters.incr(name, labels={"user": "u7"})).minute >= 2
    await counters.incr(name)
    assert len(await counters.labels(name)) == 100
    assert (await counters.range(name)).total == 102


# --- the sync client ----------------------------------------------------------------------------
@pytest.fixture
def sync_rk(embedded: Server) -> Iterator[redkit.Client]:
    with redkit.Client(embedded.url) as client:
        yield client


def test_sync_surface(sync_rk: redkit.Client, name: str) -> None:
    rk = sync_rk
    c = rk.collection(name)
    info = c.define({"status": "equal", "score": "range"}, ttl=0)
    assert info.name == name and info.ttl is None
    for i in range(12):
        c.put(f"r{i:02d}", {"status": "open" if i % 3 else "closed", "score": i})
    w = c.create("new", {"status": "open", "score": 100})
    with pytest.raises(redkit.Conflict):
        c.put("new", {"x": 1}, if_version=w.version + 1)
    assert c.patch("new", {"extra": 1}, if_version=w.version).version > w.version
    got = c.get("new")
    assert got is not None and got.data == {"status": "open", "score": 100, "extra": 1}
    assert c.incr("new", "extra", 4).value == 5
    assert [r.id if r else None for r in c.get_many(["r00", "nope"])] == ["r00", None]
    page = c.query({"status": "closed"}, limit=2)
    assert [r.id for r in page] == ["r00", "r03"] and page.cursor is not None
    assert [r.id for r in c.scan({"status": "closed"}, page=2)] == ["r00", "r03", "r06", "r09"]
    scores = [r.data["score"] for r in c.scan(range=redkit.Range("score", min=9), order="desc", page=2)]
    assert scores == [100, 11, 10, 9]
    # Leaving a scan early is fine.
    for record in c.scan(page=1):
        assert record.id == "new"
        break
    c.delete("new")
    assert c.get("new") is None
    assert name in {x.name for x in rk.collections.list()}
    c.drop()
    assert c.info() is None

    assert rk.lists.push(name, ["a", "b", "c"], cap=2) == 2
    assert rk.lists.get(name).items == ["c", "b"]
    rk.lists.delete(name)
    assert rk.lists.get(name).length == 0

    t0 = (now_ms() // MINUTE - 3) * MINUTE
    assert rk.counters.incr(name, 4, labels={"k": "v"}, at=t0 / 1000).minute == 4
    assert rk.counters.range(name, start=t0 / 1000, end=(t0 + MINUTE) / 1000).values == [4, 0]
    assert rk.counters.labels(name) == [{"k": "v"}]
