"""The example shop, driven over HTTP (httpx on the ASGI app) against real redkit servers:
first on the embedded store, then on Redis, then with Redis killed."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx
import pytest

import redkit_test_fixtures as fx
import worker as worker_module

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")


def load_app(url: str) -> ModuleType:
    """A fresh copy of app.py bound to ``url`` (as REDKIT_URL would bind it)."""
    os.environ.update(REDKIT_URL=url, API_LIMIT="30", SECURE_COOKIES="0")
    spec = importlib.util.spec_from_file_location(f"shop_{abs(hash(url))}_{time.monotonic_ns()}", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def browser(shop: ModuleType, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shop.app, client=(ip, 5555)),
        base_url="http://shop",
    )


async def running(url: str) -> AsyncIterator[tuple[ModuleType, Any]]:
    shop = load_app(url)
    async with shop.app.router.lifespan_context(shop.app):
        w = worker_module.make_worker(shop.rk)
        w.poll_wait = 0.3
        run = asyncio.ensure_future(w.run())
        try:
            yield shop, w
        finally:
            await w.shutdown()
            await run


@pytest.fixture
async def shop(server: fx.Server) -> AsyncIterator[tuple[ModuleType, Any]]:
    async for pair in running(server.url):
        yield pair


async def until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_the_shop(shop: tuple[ModuleType, Any], name: str) -> None:
    app, _ = shop
    alice = await browser(app, "198.51.100.1")
    # Cached loader: twenty concurrent requests, one database read.
    reads = app.db_reads
    answers = await asyncio.gather(*(alice.get("/products/1") for _ in range(20)))
    assert {r.json()["name"] for r in answers} == {"teapot"} and app.db_reads - reads <= 1
    assert (await alice.get("/products/99")).status_code == 404

    # Sign-up: a session cookie and a welcome e-mail from the worker (once, however often enqueued).
    assert (await alice.get("/me")).status_code == 401
    r = await alice.post("/signup", json={"user": name, "password": "pw", "email": f"{name}@example.com"})
    assert r.status_code == 200 and "redkit_session" in r.headers["set-cookie"]
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Lax" in r.headers["set-cookie"]
    await until(lambda: {"to": f"{name}@example.com", "subject": f"Welcome, {name}!"} in worker_module.OUTBOX)

    # The cart lives in the session; an admin's price change invalidates the cached product.
    await alice.post("/cart/1")
    assert (await alice.post("/cart/2")).json() == {"cart": [1, 2]}
    assert (await alice.put("/products/2/price", json={"price": 9})).json()["price"] == 9
    assert (await alice.get("/me")).json() == {"user": name, "cart": [1, 2]}

    # Checkout under a lock: a double click charges once; the receipt goes out once.
    first, second = await asyncio.gather(alice.post("/checkout"), alice.post("/checkout"))
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    order = (first if first.status_code == 200 else second).json()
    assert order["total"] == 39 and order["order"] > 0
    await until(lambda: any(m["subject"] == f"Order {order['order']}: 39 EUR" for m in worker_module.OUTBOX))

    # Login from a second device; logout everywhere ends both sessions.
    phone = await browser(app, "198.51.100.2")
    assert (await phone.post("/login", json={"user": name, "password": "nope"})).status_code == 401
    assert (await phone.post("/login", json={"user": name, "password": "pw"})).status_code == 200
    assert (await phone.get("/me")).json()["user"] == name
    assert (await phone.post("/logout-everywhere")).json() == {"ended": 2}
    assert (await phone.get("/me")).status_code == 401
    assert (await alice.get("/me")).status_code == 401
    await alice.aclose()
    await phone.aclose()


async def test_per_user_rate_limits(shop: tuple[ModuleType, Any], name: str) -> None:
    app, _ = shop
    ip = "198.51.100.3"
    users = [await browser(app, ip), await browser(app, ip)]  # one address, two users
    for i, b in enumerate(users):
        assert (await b.post("/signup", json={"user": f"{name}{i}", "password": "pw"})).status_code == 200
    statuses = [(await users[0].get("/products/1")).status_code for _ in range(35)]
    assert statuses == [200] * 30 + [429] * 5  # 30 a minute for this user (its sign-up counted for the IP)
    refused = await users[0].get("/products/1")
    assert int(refused.headers["retry-after"]) >= 1 and refused.json()["error"]["code"] == "limit_exceeded"
    ok = await users[1].get("/products/1")  # the other user has their own budget
    assert ok.status_code == 200 and "ratelimit" in ok.headers
    for b in users:
        await b.aclose()


async def test_the_shop_with_redis_killed(cluster: fx.Cluster, name: str) -> None:
    redis = cluster.redis()
    server = cluster.server(redis.url)
    async for app, _ in running(server.url):
        b = await browser(app, "198.51.100.4")
        assert (
            await b.post(
                "/signup",
                json={"user": name, "password": "pw", "email": "x@example.com"},
            )
        ).status_code == 200
        await b.post("/cart/1")
        redis.kill()
        # The session, the cart, the cached loader and the rate limits carry on; the lock
        # fails closed, answered as a 503 in redkit's error envelope.
        assert (await b.get("/products/2")).status_code == 200
        assert (await b.get("/me")).json() == {"user": name, "cart": [1]}
        await asyncio.to_thread(server.wait_mode, "fallback")
        r = await b.post("/checkout")
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        redis.start()
        await asyncio.to_thread(server.wait_mode, "redis", 15)
        r = await b.post("/checkout")
        assert r.status_code == 200 and r.json()["total"] == 30
        await b.aclose()
