"""ASGI middleware for Starlette and FastAPI (plain ASGI: no framework import needed).

- :class:`SessionMiddleware`: a signed session cookie backed by redkit sessions; handlers get
  a :class:`SessionHandle` (``request.state.session``, or ``redkit.fastapi.session``) that
  loads the session on first use, and ``login`` rotates the id (no session fixation).
- :class:`RateLimitMiddleware`: checks a policy per request, keyed by user, header or client
  IP (with trusted proxies); passes ``RateLimit`` and ``RateLimit-Policy`` on, and answers
  429 with ``Retry-After`` and the JSON error envelope when refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
from http.cookies import SimpleCookie
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import errors
from .client import AsyncClient
from .ratelimit import Decision
from .sessions import Session

log = logging.getLogger("redkit")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KeyFunc = Callable[[Scope], Union[Optional[str], Awaitable[Optional[str]]]]

#: Where the middleware puts the request's SessionHandle in the ASGI scope.
SCOPE_KEY = "redkit.session"


def _headers(scope: Scope) -> Dict[str, str]:
    """Request headers by lower-case name; repeated ones joined (cookies with ``; ``)."""
    out: Dict[str, str] = {}
    for k, v in scope.get("headers") or ():
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out


# --- sessions ---------------------------------------------------------------------------------


class _Signer:
    def __init__(self, secret: Union[str, bytes]) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("redkit: the session secret_key must be at least 16 bytes")
        self._key = key

    def sign(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return value + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def unsign(self, signed: str) -> Optional[str]:
        value, dot, _sig = signed.rpartition(".")
        if not dot or not value:
            return None
        return value if hmac.compare_digest(self.sign(value), signed) else None


class SessionHandle:
    """The request's session. Nothing is asked of redkit until first used.

    ``await session.load()`` → the :class:`redkit.Session` or None; ``await
    session.data()`` → its data (``{}`` without one); ``create``, ``update`` (field merge;
    creates a session when there is none), ``login`` (a new id bound to ``user``, keeping
    the data: rotation on login), ``rotate``, ``logout``, ``logout_everywhere``.
    """

    def __init__(self, client: AsyncClient, session_id: Optional[str], options: SessionMiddleware) -> None:
        self._client = client
        self._id = session_id
        self._options = options
        self._session: Optional[Session] = None
        self._loaded = session_id is None
        self.cookie: Optional[str] = None  # "set" or "clear" once the response must change it

    @property
    def id(self) -> Optional[str]:
        return self._id

    async def load(self) -> Optional[Session]:
        if not self._loaded:
            self._loaded = True
            assert self._id is not None
            self._session = await self._client.sessions.get(self._id)
            if self._session is None:  # ended, revoked or unknown: drop the cookie
                self._id = None
                self.cookie = "clear"
        return self._session

    async def user(self) -> Optional[str]:
        s = await self.load()
        return s.user if s is not None else None

    async def data(self) -> Dict[str, Any]:
        s = await self.load()
        return dict(s.data) if s is not None else {}

    def _use(self, session: Session) -> Session:
        self._session = session
        self._loaded = True
        if session.id != self._id:
            self._id = session.id
            self.cookie = "set"
        return session

    async def create(self, data: Optional[Mapping[str, Any]] = None, user: Optional[str] = None) -> Session:
        """A new session (the current one, if any, ends)."""
        old = self._id
        s = await self._client.sessions.create(
            data, user, idle_ttl=self._options.idle_ttl, absolute_ttl=self._options.absolute_ttl
        )
        if old is not None:
            await self._client.sessions.delete(old)
        return self._use(s)

    async def update(self, data: Mapping[str, Any]) -> Session:
        """Merges ``data`` (``None`` removes a field); makes a session when there is none."""
        if await self.load() is None:
            return await self.create({k: v for k, v in data.items() if v is not None})
        assert self._id is not None
        try:
            return self._use(await self._client.sessions.update(self._id, data))
        except errors.NotFound:
            self._id, self._session = None, None
            return await self.create({k: v for k, v in data.items() if v is not None})

    async def login(self, user: str, data: Optional[Mapping[str, Any]] = None) -> Session:
        """Signs ``user`` in: a new session id (never the one the browser came with), owned by
        ``user`` (so ``logout_everywhere`` and ``sessions.list(user)`` find it), keeping the
        data gathered before (a cart) merged with ``data``."""
        current = await self.load()
        if current is not None and current.user == user:
            s = await self._client.sessions.rotate(current.id or "")
            if data:
                s = await self._client.sessions.update(s.id or "", data)
            return self._use(s)
        merged = dict(current.data) if current is not None else {}
        merged.update(data or {})
        return await self.create(merged, user)

    async def rotate(self) -> Optional[Session]:
        """A new id for the same session (after a privilege change)."""
        current = await self.load()
        if current is None or current.id is None:
            return None
        return self._use(await self._client.sessions.rotate(current.id))

    async def logout(self) -> None:
        """Ends this session and drops the cookie."""
        if self._id is not None:
            await self._client.sessions.delete(self._id)
        self._id, self._session, self._loaded = None, None, True
        self.cookie = "clear"

    async def logout_everywhere(self) -> int:
        """Ends every session of this session's user; how many."""
        user = await self.user()
        if user is None:
            await self.logout()
            return 0
        n = await self._client.sessions.revoke_all(user)
        self._id, self._session, self._loaded = None, None, True
        self.cookie = "clear"
        return n


class SessionMiddleware:
    """``app.add_middleware(redkit.asgi.SessionMiddleware, client=rk, secret_key=...)``.

    The cookie (``cookie_name``) holds the session id signed with HMAC-SHA256 under
    ``secret_key``; a forged or altered cookie is ignored without asking redkit. Cookies
    are ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` by default (``secure=False`` for
    plain-HTTP development). ``idle_ttl`` / ``absolute_ttl`` (seconds) apply to the sessions
    it creates; ``max_age`` (seconds) makes the cookie persistent (default: a browser
    session cookie; the server ends the session anyway).
    """

    def __init__(
        self,
        app: ASGIApp,
        client: AsyncClient,
        secret_key: Union[str, bytes],
        *,
        cookie_name: str = "redkit_session",
        path: str = "/",
        domain: Optional[str] = None,
        secure: bool = True,
        httponly: bool = True,
        samesite: Optional[str] = "lax",
        max_age: Optional[int] = None,
        idle_ttl: Optional[int] = None,
        absolute_ttl: Optional[int] = None,
    ) -> None:
        self.app = app
        self.client = client
        self._signer = _Signer(secret_key)
        self.cookie_name = cookie_name
        self.path = path
        self.domain = domain
        self.secure = secure
        self.httponly = httponly
        self.samesite = samesite
        self.max_age = max_age
        self.idle_ttl = idle_ttl
        self.absolute_ttl = absolute_ttl

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        session_id: Optional[str] = None
        raw = _headers(scope).get("cookie")
        if raw:
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(raw)
            except Exception:  # a malformed Cookie header: no session
                cookie = SimpleCookie()
            morsel = cookie.get(self.cookie_name)
            if morsel is not None:
                session_id = self._signer.unsign(morsel.value)
        handle = SessionHandle(self.client, session_id, self)
        scope[SCOPE_KEY] = handle
        scope.setdefault("state", {})["session"] = handle

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and handle.cookie is not None:
                headers = list(message.get("headers") or [])
                headers.append((b"set-cookie", self._set_cookie(handle).encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _set_cookie(self, handle: SessionHandle) -> str:
        parts: List[str]
        if handle.cookie == "set" and handle.id is not None:
            parts = [f"{self.cookie_name}={self._signer.sign(handle.id)}"]
            if self.max_age is not None:
                parts.append(f"Max-Age={self.max_age}")
        else:
            parts = [f"{self.cookie_name}=", "Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
        parts.append(f"Path={self.path}")
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        if self.samesite:
            parts.append(f"SameSite={self.samesite.capitalize()}")
        return "; ".join(parts)


def get_session(scope: Mapping[str, Any]) -> SessionHandle:
    """The request's :class:`SessionHandle` (``SessionMiddleware`` must be installed)."""
    handle = scope.get(SCOPE_KEY)
    if not isinstance(handle, SessionHandle):
        raise RuntimeError("redkit: no session here; add redkit.asgi.SessionMiddleware to the app")
    return handle


# --- rate limits ------------------------------------------------------------------------------


def by_ip(trusted_proxies: Iterable[str] = ()) -> KeyFunc:
    """Keys by the client's IP address. Behind proxies, list them (addresses or networks,
    e.g. ``["10.0.0.0/8"]``): when the peer is one of them, the rightmost address of
    ``X-Forwarded-For`` that is not a trusted proxy is the client."""
    networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip())
        except ValueError:
            return False
        return any(ip in n for n in networks)

    def key(scope: Scope) -> Optional[str]:
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if networks and trusted(peer):
            forwarded = _headers(scope).get("x-forwarded-for", "")
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            for hop in reversed(hops):
                if not trusted(hop):
                    peer = hop
                    break
        return "ip:" + peer

    return key


def by_header(name: str, fallback: Optional[KeyFunc] = None) -> KeyFunc:
    """Keys by a request header (an API key…); without it, by ``fallback`` (or not limited)."""
    header = name.lower()

    async def key(scope: Scope) -> Optional[str]:
        value = _headers(scope).get(header)
        if value:
            return f"h:{header}:{value}"
        return await _resolve(fallback, scope) if fallback is not None else None

    return key


def by_user(
    get_user: Optional[Callable[[Scope], Union[Optional[str], Awaitable[Optional[str]]]]] = None,
    fallback: Optional[KeyFunc] = None,
) -> KeyFunc:
    """Keys by the signed-in user: ``get_user(scope)``, by default the user of the redkit
    session (``SessionMiddleware`` must run first); anonymous requests by ``fallback``
    (default: client IP)."""
    other = fallback if fallback is not None else by_ip()

    async def default_user(scope: Scope) -> Optional[str]:
        handle = scope.get(SCOPE_KEY)
        return await handle.user() if isinstance(handle, SessionHandle) else None

    async def key(scope: Scope) -> Optional[str]:
        user = await _resolve(get_user or default_user, scope)
        if user:
            return "user:" + user
        return await _resolve(other, scope)

    return key


async def _resolve(
    func: Optional[Callable[[Scope], Union[Optional[str], Awaitable[Optional[str]]]]], scope: Scope
) -> Optional[str]:
    if func is None:
        return None
    value = func(scope)
    if inspect.isawaitable(value):
        value = await value
    return value


def refusal_body(decision: Decision) -> bytes:
    retry = decision.retry_after or 0.0
    return json.dumps(
        {
            "error": {
                "code": "limit_exceeded",
                "message": f"rate limited by policy {decision.policy!r}; retry after {retry:.3f} s",
            }
        }
    ).encode()


class RateLimitMiddleware:
    """``app.add_middleware(redkit.asgi.RateLimitMiddleware, client=rk, policy="api",
    key=redkit.asgi.by_user())``.

    Each HTTP request costs ``cost`` under ``policy`` for its key (``key(scope)`` → a string,
    or None to let it through unlimited; default: client IP). Allowed responses carry
    ``RateLimit`` and ``RateLimit-Policy``; refusals are 429 with those, ``Retry-After``
    (seconds) and ``{"error": {"code": "limit_exceeded", ...}}``. ``exempt(scope)`` skips
    requests (health checks). If redkit cannot answer, requests pass (``fail_open``) —
    the server itself already falls back to a local limiter when Redis is away.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: AsyncClient,
        policy: str,
        *,
        key: Optional[KeyFunc] = None,
        cost: int = 1,
        exempt: Optional[Callable[[Scope], bool]] = None,
        fail_open: bool = True,
    ) -> None:
        self.app = app
        self.client = client
        self.policy = policy
        self.key = key or by_ip()
        self.cost = cost
        self.exempt = exempt
        self.fail_open = fail_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt is not None and self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        k = await _resolve(self.key, scope)
        if k is None:
            await self.app(scope, receive, send)
            return
        try:
            decision = await self.client.ratelimit.check(self.policy, k, self.cost)
        except errors.Error as e:
            if not self.fail_open:
                raise
            log.warning("redkit rate limit %s: check failed (%r); letting the request through", self.policy, e)
            await self.app(scope, receive, send)
            return
        headers = _decision_headers(decision)
        if not decision.allowed:
            body = refusal_body(decision)
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*list(message.get("headers") or []), *headers]
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _decision_headers(decision: Decision) -> List[Tuple[bytes, bytes]]:
    names = {"ratelimit": b"RateLimit", "ratelimit-policy": b"RateLimit-Policy", "retry-after": b"Retry-After"}
    out: List[Tuple[bytes, bytes]] = []
    for k, v in decision.headers.items():
        if k == "retry-after" and decision.allowed:
            continue
        out.append((names[k], v.encode("latin-1")))
    if not decision.allowed and "retry-after" not in decision.headers and decision.retry_after is not None:
        out.append((b"Retry-After", str(max(1, int(decision.retry_after + 0.999))).encode()))
    return out


def decision_headers(decision: Decision) -> Dict[str, str]:
    """A decision's headers as a dict, for a framework response."""
    return {k.decode(): v.decode("latin-1") for k, v in _decision_headers(decision)}


__all__: Sequence[str] = [
    "SessionMiddleware",
    "SessionHandle",
    "get_session",
    "RateLimitMiddleware",
    "by_ip",
    "by_header",
    "by_user",
    "decision_headers",
]
