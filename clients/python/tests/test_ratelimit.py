"""Rate limits: decisions, the decorator, policies shared by servers, and the ASGI middleware."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, Optional

import httpx
import pytest
from fastapi import Depends, FastAPI

import redkit
from conftest import Server
from redkit.asgi import RateLimitMiddleware, by_header, by_ip, by_user
from redkit.fastapi import install_error_handlers, rate_limit


async def test_check_counts_and_refuses(rk: redkit.AsyncClient, name: str) -> None:
    await rk.ratelimit.define(name, limit=3, period=60)
    decisions = [await rk.ratelimit.check(name, "user:1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    refused = decisions[3]
    assert not refused and refused.retry_after is not None and 0 < refused.retry_after <= 20
    assert refused.headers["retry-after"] and refused.headers["ratelimit-policy"] == f'"{name}";q=3;w=60'
    assert "retry-after" not in decisions[0].headers and decisions[0].limit == 3 and decisions[0].window == 60
    # Another key has its own budget; a cost spends several units.
    assert (await rk.ratelimit.check(name, "user:2", cost=3)).allowed
    assert not (await rk.ratelimit.check(name, "user:2")).allowed


async def test_hit_raises_rate_limited(rk: redkit.AsyncClient, name: str) -> None:
    await rk.ratelimit.define(name, limit=1, period=60)
    await rk.ratelimit.hit(name, "k")
    with pytest.raises(redkit.RateLimited) as e:
        await rk.ratelimit.hit(name, "k")
    assert e.value.retry_after is not None and e.value.retry_after > 0
    assert e.value.decision is not None and e.value.decision.policy == name


async def test_policies(rk: redkit.AsyncClient, name: str) -> None:
    await rk.ratelimit.define(name, limit=5, period=1.5, algorithm="sliding_window", burst=None)
    p = await rk.ratelimit.policy(name)
    assert p is not None and p["policy"]["limit"] == 5 and p["policy"]["period_ms"] == 1500
    assert p["policy"]["algorithm"] == "sliding_window"
    assert name in {q["name"] for q in await rk.ratelimit.policies()}
    assert await rk.ratelimit.delete_policy(name) is True
    assert await rk.ratelimit.policy(name) is None
    assert await rk.ratelimit.delete_policy(name) is False
    with pytest.raises(redkit.NotFound):
        await rk.ratelimit.check(name, "k")
    with pytest.raises(redkit.InvalidInput) as e:
        await rk.ratelimit.define(name, limit=0, period=1)
    assert "limit" in e.value.message
    with pytest.raises(redkit.InvalidInput):
        await rk.ratelimit.define(name, limit=1, period=1, algorithm="magic")


async def test_decorator(rk: redkit.AsyncClient, name: str) -> None:
    await rk.ratelimit.define(name, limit=2, period=60)

    @rk.ratelimit.limit(name, key="user:{user_id}")
    async def search(user_id: int, q: str) -> str:
        return q

    assert await search(1, "a") == "a" and await search(1, "b") == "b"
    with pytest.raises(redkit.RateLimited):
        await search(1, "c")
    assert await search(2, "d") == "d"

    async def by_team(team: str) -> str:
        return "team:" + team

    @rk.ratelimit.limit(name, key=by_team, cost=2)
    async def report(team: str) -> int:
        return 1

    assert await report("x") == 1
    with pytest.raises(redkit.RateLimited):
        await report("x")


async def test_a_policy_reaches_the_other_server_within_a_second(
    on_redis: Server, on_redis_2: Server, name: str
) -> None:
    async with redkit.AsyncClient(on_redis.url) as a, redkit.AsyncClient(on_redis_2.url) as b:
        await a.ratelimit.define(name, limit=2, period=60)
        start = time.monotonic()
        while await b.ratelimit.policy(name) is None:
            assert time.monotonic() - start < 1.5, "the policy did not reach the second server"
            await asyncio.sleep(0.05)
        # One budget across both servers.
        assert (await a.ratelimit.check(name, "k")).allowed
        assert (await b.ratelimit.check(name, "k")).allowed
        assert not (await a.ratelimit.check(name, "k")).allowed
        assert not (await b.ratelimit.check(name, "k")).allowed


def _app(rk: redkit.AsyncClient, policy: str, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> Dict[str, str]:
        return {"hi": "there"}

    @app.get("/health")
    async def health() -> Dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(RateLimitMiddleware, client=rk, policy=policy, **options)
    return app


def _client(app: Any, ip: str = "203.0.113.9") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 4711)), base_url="http://app")


async def test_middleware_passes_headers_and_refuses_with_429(rk: redkit.AsyncClient, name: str) -> None:
    await rk.ratelimit.define(name, limit=2, period=60)
    app = _app(rk, name, exempt=lambda scope: scope["path"] == "/health")
    async with _client(app) as http:
        ok = await http.get("/hello")
        assert ok.status_code == 200 and ok.json() == {"hi": "there"}
        assert ok.headers["ratelimit-policy"] == f'"{name}";q=2;w=60' and "r=1" in ok.headers["ratelimit"]
        assert "retry-after" not in ok.headers
        await http.get("/hello")
        refused = await http.get("/hello")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1 and "r=0" in refused.headers["ratelimit"]
        assert refused.json()["error"]["code"] == "limit_exceeded"
        for _ in range(3):  # exempt
            assert (await http.get("/health")).status_code == 200
    async with _client(app, ip="203.0.113.10") as other:  # another client IP: its own budget
        assert (await other.get("/hello")).status_code == 200


async def test_middleware_keys(rk: redkit.AsyncClient, name: str) -> None:
    await rk.ratelimit.define(name, limit=1, period=60)
    # By header: each API key its own budget; requests without one by IP.
    app = _app(rk, name, key=by_header("x-api-key", fallback=by_ip()))
    async with _client(app) as http:
        assert (await http.get("/hello", headers={"x-api-key": "a"})).status_code == 200
        assert (await http.get("/hello", headers={"x-api-key": "a"})).status_code == 429
        assert (await http.get("/hello", headers={"x-api-key": "b"})).status_code == 200
        assert (await http.get("/hello")).status_code == 200
        assert (await http.get("/hello")).status_code == 429

    # Behind a trusted proxy the client is the rightmost untrusted X-Forwarded-For hop;
    # from an untrusted peer the header is ignored (it could be forged).
    proxies = ["10.0.0.0/8"]
    app = _app(rk, name + "x", key=by_ip(trusted_proxies=proxies))
    await rk.ratelimit.define(name + "x", limit=1, period=60)
    async with _client(app, ip="10.1.2.3") as via_proxy, _client(app, ip="198.51.100.7") as direct:
        forged = {"x-forwarded-for": "192.0.2.1, 198.51.100.50, 10.9.9.9"}
        assert (await via_proxy.get("/hello", headers=forged)).status_code == 200  # 198.51.100.50
        assert (await via_proxy.get("/hello", headers={"x-forwarded-for": "198.51.100.50"})).status_code == 429
        assert (await via_proxy.get("/hello", headers={"x-forwarded-for": "198.51.100.51"})).status_code == 200
        assert (await direct.get("/hello", headers={"x-forwarded-for": "198.51.100.99"})).status_code == 200
        assert (await direct.get("/hello", headers={"x-forwarded-for": "198.51.100.98"})).status_code == 429

    # By user: whatever get_user answers; anonymous by IP.
    users: Dict[str, Optional[str]] = {"/hello": "ada"}
    app = _app(rk, name + "u", key=by_user(lambda scope: users.get(scope["path"])))
    await rk.ratelimit.define(name + "u", limit=1, period=60)
    async with _client(app) as http:
        assert (await http.get("/hello")).status_code == 200
        assert (await http.get("/hello")).status_code == 429
        users["/hello"] = "grace"
        assert (await http.get("/hello")).status_code == 200


async def test_middleware_fails_open_when_redkit_is_away(name: str) -> None:
    from conftest import free_port

    async with redkit.AsyncClient(f"http://127.0.0.1:{free_port()}", retries=0, connect_timeout=0.3) as dead:
        async with _client(_app(dead, name)) as http:
            assert (await http.get("/hello")).status_code == 200
        async with _client(_app(dead, name, fail_open=False)) as http:
            with pytest.raises(redkit.ConnectError):
                await http.get("/hello")


async def test_fastapi_dependency_and_error_handlers(rk: redkit.AsyncClient, name: str) -> None:
    await rk.ratelimit.define(name, limit=1, period=60)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/dep", dependencies=[Depends(rate_limit(rk, name, key=by_header("x-user")))])
    async def dep() -> str:
        return "ok"

    @rk.ratelimit.limit(name, key="fn:{who}")
    async def limited(who: str) -> str:
        return who

    @app.get("/fn/{who}")
    async def fn(who: str) -> str:
        return await limited(who)

    async with _client(app) as http:
        ok = await http.get("/dep", headers={"x-user": "u1"})
        assert ok.status_code == 200 and "ratelimit" in ok.headers
        refused = await http.get("/dep", headers={"x-user": "u1"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert (await http.get("/fn/a")).status_code == 200
        r = await http.get("/fn/a")
        assert r.status_code == 429 and r.json()["error"]["code"] == "limit_exceeded"
        assert int(r.headers["retry-after"]) >= 1
