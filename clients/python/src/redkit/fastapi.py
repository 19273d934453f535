"""FastAPI dependencies (needs FastAPI; the middleware are in :mod:`redkit.asgi`).

from redkit.fastapi import SessionDep, rate_limit

@app.post("/login")
async def login(session: SessionDep): ...

@app.get("/search", dependencies=[Depends(rate_limit(rk, "search", key=by_user()))])
"""

from __future__ import annotations

from typing import Annotated, Any, Awaitable, Callable, Dict, Optional

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from . import errors
from .asgi import KeyFunc, SessionHandle, _resolve, by_ip, decision_headers, get_session
from .client import AsyncClient
from .sessions import Session


def session(request: Request) -> SessionHandle:
    """The request's :class:`redkit.asgi.SessionHandle` (from ``SessionMiddleware``)."""
    return get_session(request.scope)


SessionDep = Annotated[SessionHandle, Depends(session)]
"""``async def handler(session: SessionDep)``."""


async def current_session(request: Request) -> Session:
    """The signed-in session, or 401."""
    s = await get_session(request.scope).load()
    if s is None:
        raise HTTPException(status_code=401, detail="not signed in")
    return s


CurrentSession = Annotated[Session, Depends(current_session)]
"""``async def handler(session: CurrentSession)``: 401 without a live session."""


def rate_limit(
    client: AsyncClient, policy: str, *, key: Optional[KeyFunc] = None, cost: int = 1, fail_open: bool = True
) -> Callable[[Request, Response], Awaitable[None]]:
    """A dependency that checks ``policy`` for the request (keyed like the middleware;
    default client IP), adds ``RateLimit`` / ``RateLimit-Policy`` to the response, and
    answers 429 with ``Retry-After`` when refused."""
    keyf = key or by_ip()

    async def dependency(request: Request, response: Response) -> None:
        k = await _resolve(keyf, request.scope)
        if k is None:
            return
        try:
            decision = await client.ratelimit.check(policy, k, cost)
        except errors.Error:
            if fail_open:
                return
            raise
        headers = decision_headers(decision)
        if not decision.allowed:
            raise HTTPException(status_code=429, detail="rate limited", headers=headers)
        for name, value in headers.items():
            response.headers[name] = value

    return dependency


def install_error_handlers(app: FastAPI) -> None:
    """Answers redkit exceptions escaping a handler with the JSON error envelope: a
    :class:`redkit.RateLimited` (e.g. from ``@rk.ratelimit.limit``) as 429 with
    ``Retry-After``, :class:`redkit.Unavailable` as 503, and the rest by their status."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.Error)
        headers: Dict[str, str] = {}
        status = exc.status or 500
        if isinstance(exc, errors.RateLimited):
            status = 429
            if exc.decision is not None:
                headers = decision_headers(exc.decision)
            elif exc.retry_after is not None:
                headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
        elif isinstance(exc, errors.Unavailable):
            status = 503
        body: Any = {"error": {"code": exc.code, "message": exc.message}}
        return JSONResponse(body, status_code=status, headers=headers)

    app.add_exception_handler(errors.Error, handle)


__all__ = ["session", "SessionDep", "current_session", "CurrentSession", "rate_limit", "install_error_handlers"]
