"""The session middleware on a FastAPI app, over httpx: signed cookies, rotation on login,
forged cookies ignored, logout and logout everywhere clearing the cookie."""

from __future__ import annotations

from typing import Any, Dict, Optional

import httpx
import pytest
from fastapi import FastAPI

import redkit
from redkit.asgi import SessionMiddleware
from redkit.fastapi import CurrentSession, SessionDep

SECRET = "a-test-secret-of-enough-length"


def make_app(rk: redkit.AsyncClient, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.post("/cart/{item}")
    async def add(item: str, session: SessionDep) -> Dict[str, Any]:
        cart = (await session.data()).get("cart", [])
        s = await session.update({"cart": [*cart, item]})
        return {"cart": s.data["cart"]}

    @app.post("/login/{user}")
    async def login(user: str, session: SessionDep) -> Dict[str, Optional[str]]:
        s = await session.login(user)
        return {"id": s.id}

    @app.get("/me")
    async def me(session: CurrentSession) -> Dict[str, Any]:
        return {"user": session.user, "data": session.data, "id": session.id}

    @app.post("/logout")
    async def logout(session: SessionDep) -> None:
        await session.logout()

    @app.post("/everywhere")
    async def everywhere(session: SessionDep) -> int:
        return await session.logout_everywhere()

    app.add_middleware(SessionMiddleware, client=rk, secret_key=SECRET, **options)
    return app


def browser(app: FastAPI) -> httpx.AsyncClient:
    # base_url https: the cookie is Secure by default.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://app")


async def test_login_rotates_and_keeps_the_anonymous_data(rk: redkit.AsyncClient, name: str) -> None:
    async with browser(make_app(rk)) as b:
        assert (await b.get("/me")).status_code == 401
        r = await b.post("/cart/tea")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("redkit_session=") and "Secure" in cookie and "HttpOnly" in cookie
        anonymous_id = b.cookies["redkit_session"].rsplit(".", 1)[0]
        await b.post("/cart/cup")
        r = await b.post(f"/login/{name}")
        signed_in_id = r.json()["id"]
        assert signed_in_id != anonymous_id  # no session fixation
        assert await rk.sessions.get(anonymous_id) is None
        me = (await b.get("/me")).json()
        assert me == {"user": name, "data": {"cart": ["tea", "cup"]}, "id": signed_in_id}
        # Signing in again as the same user rotates the id again.
        again = (await b.post(f"/login/{name}")).json()["id"]
        assert again != signed_in_id and await rk.sessions.get(signed_in_id) is None
        r = await b.post("/logout")
        assert "Max-Age=0" in r.headers["set-cookie"]
        assert await rk.sessions.get(again) is None
        assert (await b.get("/me")).status_code == 401


async def test_forged_or_altered_cookies_are_ignored(rk: redkit.AsyncClient, name: str) -> None:
    victim = await rk.sessions.create({"secret": 1}, user=name)
    assert victim.id is not None
    app = make_app(rk)
    async with browser(app) as b:
        for forged in (victim.id, victim.id + ".AAAA", "", "garbage..."):
            b.cookies.set("redkit_session", forged)
            assert (await b.get("/me")).status_code == 401
    async with browser(app) as b:
        await b.post(f"/login/{name}")
        signed = b.cookies["redkit_session"]
        value, sig = signed.rsplit(".", 1)
        b.cookies.set("redkit_session", value[:-1] + ("A" if value[-1] != "A" else "B") + "." + sig)
        assert (await b.get("/me")).status_code == 401


async def test_logout_everywhere(rk: redkit.AsyncClient, name: str) -> None:
    app = make_app(rk, secure=False, max_age=3600)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as laptop:
        r = await laptop.post(f"/login/{name}")
        assert "Secure" not in r.headers["set-cookie"] and "Max-Age=3600" in r.headers["set-cookie"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as phone:
            await phone.post(f"/login/{name}")
            assert len(await rk.sessions.list(name)) == 2
            assert (await phone.post("/everywhere")).json() == 2
            assert (await phone.get("/me")).status_code == 401
        assert (await laptop.get("/me")).status_code == 401
        assert await rk.sessions.list(name) == []


def test_short_secrets_are_refused(rk: redkit.AsyncClient) -> None:
    with pytest.raises(ValueError):
        SessionMiddleware(make_app(rk), client=rk, secret_key="short")
