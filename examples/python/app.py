"""A small shop API on redkit: a cached product loader, login sessions with logout
everywhere, per-user rate limits, a checkout under a lock, and e-mails sent by a worker
(worker.py).

    redkit serve &                       # the embedded store; REDIS_URL=redis://… for Redis
    REDKIT_URL=http://127.0.0.1:7070 uvicorn app:app
    REDKIT_URL=http://127.0.0.1:7070 python worker.py

Settings (environment): REDKIT_URL (one URL or several, comma-separated, for failover),
REDKIT_API_KEY, SECRET_KEY (signs the session cookie), API_LIMIT (requests per minute and
user), SECURE_COOKIES (0 for plain-HTTP development).
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import redkit
from redkit.asgi import RateLimitMiddleware, SessionMiddleware, by_user
from redkit.fastapi import CurrentSession, SessionDep, install_error_handlers

rk = redkit.AsyncClient(
    os.environ.get("REDKIT_URL", "http://127.0.0.1:7070"),
    os.environ.get("REDKIT_API_KEY"),
)
products = rk.cache("products")
emails = rk.queue("emails")

# The shop's own data: a stand-in for its database.
PRODUCTS: Dict[int, Dict[str, Any]] = {
    1: {"id": 1, "name": "teapot", "price": 30},
    2: {"id": 2, "name": "cup", "price": 8},
}
USERS: Dict[str, str] = {"ada": "lovelace"}
db_reads = 0


@products.cached(ttl=60, key="product:{product_id}")
async def load_product(product_id: int) -> Dict[str, Any]:
    """One database read per product and minute, however many requests ask at once."""
    global db_reads
    db_reads += 1
    await asyncio.sleep(0.05)  # a slow query
    if product_id not in PRODUCTS:
        raise HTTPException(404, "no such product")
    return dict(PRODUCTS[product_id])


@products.invalidates(["product:{product_id}"])
async def save_price(product_id: int, price: int) -> None:
    PRODUCTS[product_id]["price"] = price


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await rk.ratelimit.define("api", limit=int(os.environ.get("API_LIMIT", "120")), period=60)
    yield
    await rk.aclose()


app = FastAPI(lifespan=lifespan)
install_error_handlers(app)  # redkit errors become JSON answers (a lock held: 409, Redis away: 503)
app.add_middleware(
    RateLimitMiddleware,
    client=rk,
    policy="api",
    key=by_user(),
    exempt=lambda s: s["path"] == "/health",
)
# Added last, so it runs first: the rate limit keys by the session's user.
app.add_middleware(
    SessionMiddleware,
    client=rk,
    secret_key=os.environ.get("SECRET_KEY", "dev-only-secret-change-me"),
    secure=os.environ.get("SECURE_COOKIES", "1") != "0",
)


class Credentials(BaseModel):
    user: str
    password: str
    email: str = ""


class Price(BaseModel):
    price: int


@app.get("/health")
async def health() -> Dict[str, Any]:
    return {"redkit": (await rk.ready())["mode"]}


@app.get("/products/{product_id}")
async def get_product(product_id: int) -> Dict[str, Any]:
    return await load_product(product_id)


@app.put("/products/{product_id}/price")
async def set_price(product_id: int, body: Price, session: CurrentSession) -> Dict[str, Any]:
    await save_price(product_id, body.price)
    return await load_product(product_id)


@app.post("/signup")
async def signup(body: Credentials, session: SessionDep) -> Dict[str, Any]:
    if body.user in USERS:
        raise HTTPException(409, "taken")
    USERS[body.user] = body.password
    await emails.enqueue_task(
        "welcome",
        {"to": body.email, "user": body.user},
        unique_key=f"welcome:{body.user}",
    )
    await session.login(body.user)
    return {"user": body.user}


@app.post("/login")
async def login(body: Credentials, session: SessionDep) -> Dict[str, Any]:
    if USERS.get(body.user) != body.password:
        raise HTTPException(401, "wrong user or password")
    await session.login(body.user)  # a new session id: no fixation
    return {"user": body.user}


@app.get("/me")
async def me(session: CurrentSession) -> Dict[str, Any]:
    return {"user": session.user, "cart": session.data.get("cart", [])}


@app.post("/cart/{product_id}")
async def add_to_cart(product_id: int, session: SessionDep) -> Dict[str, List[int]]:
    await load_product(product_id)
    cart = [*(await session.data()).get("cart", []), product_id]
    await session.update({"cart": cart})
    return {"cart": cart}


@app.post("/checkout")
async def checkout(session: CurrentSession) -> Dict[str, Any]:
    # One checkout per user at a time: a double click must not charge twice.
    async with rk.lock(f"checkout:{session.user}", ttl=10) as lock:
        current = await rk.sessions.get(session.id or "")
        cart = current.data.get("cart", []) if current else []
        if not cart:
            raise HTTPException(409, "the cart is empty")
        total = sum([(await load_product(p))["price"] for p in cart])
        await rk.sessions.update(session.id or "", {"cart": None})
        order = {"order": lock.fence, "user": session.user, "total": total}
        await emails.enqueue_task("receipt", order, id=f"receipt:{lock.fence}")
        return order


@app.post("/logout")
async def logout(session: SessionDep) -> Dict[str, bool]:
    await session.logout()
    return {"ok": True}


@app.post("/logout-everywhere")
async def logout_everywhere(session: SessionDep) -> Dict[str, int]:
    return {"ended": await session.logout_everywhere()}
