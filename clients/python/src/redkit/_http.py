"""The transport: a small asyncio HTTP/1.1 keep-alive client on httptools (llhttp).

Why not httpx or aiohttp: measured on one machine against one ``redkit serve``, a cache GET
through either costs several times a redis-py GET; an ``asyncio.Protocol`` that writes the
request in one ``write`` and parses the answer with llhttp in ``data_received`` is within
reach of redis-py (figures in the package README). It does only what redkit needs:

- HTTP/1.1 over TCP (or TLS for ``https://``), ``Content-Length`` request bodies, answers
  framed by ``Content-Length``, ``chunked`` or the connection's end, ``HEAD``;
- a keep-alive pool per server with a bound (callers wait for a free connection) and an
  idle limit below the server's own (30 s against 60 s), so a pooled connection the server
  is about to close is not reused;
- a timeout per attempt (``call_later``, no task per request); a cancelled or timed-out
  request closes its connection (its answer could still arrive);
- several servers: a server that refuses connections is skipped for a while and the next
  one used; calls are retried only where that is safe (see ``Transport.request``).
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl as _ssl
import weakref
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlencode, urlsplit

import httptools

from . import errors

_NO_BODY: Any = object()
QueryValue = Union[str, int, float, bool, None]


def seg(value: str) -> str:
    """One path segment, percent-encoded (``/`` included)."""
    return quote(value, safe="")


class Response:
    """One answer: status, headers (lower-case names) and the raw body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def error(self) -> errors.Error:
        """The exception this (error) answer stands for."""
        try:
            body = self.json()
        except ValueError:
            body = None
        return errors.from_response(self.status, body, self.headers)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:200]!r})"


class _ConnectionLost(Exception):
    """The connection ended before a whole answer arrived."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: Optional[asyncio.Transport] = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: Optional[asyncio.Future[Response]] = None
        self._head = False
        self._status = 0
        self._headers: Dict[str, str] = {}
        self._body: List[bytes] = []
        self._headers_done = False
        self._until_close = False
        self.keep_alive = True
        self.closed = False
        self.idle_since = loop.time()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Nothing asked: the server is closing (or misbehaving); never reuse this.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as e:
            self._fail(errors.Error(f"redkit: malformed HTTP answer ({e})", code="protocol_error"))
            self.close()

    def eof_received(self) -> Optional[bool]:
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.keep_alive = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._headers_done and self._until_close:
                self._finish()
            else:
                waiter.set_exception(_ConnectionLost(str(exc) if exc else "connection closed"))

    # --- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        self.keep_alive = self._parser.should_keep_alive()
        h = self._headers
        self._until_close = (
            "content-length" not in h
            and "chunked" not in h.get("transfer-encoding", "").lower()
            and self._status >= 200
            and self._status not in (204, 304)
        )
        if self._head and self._status >= 200:
            # A HEAD answer has no body whatever its Content-Length says; llhttp cannot be
            # told, so the message ends here and the next one gets a fresh parser.
            self._until_close = False
            self._parser = httptools.HttpResponseParser(self)
            self._finish()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 1xx: an interim answer; the real one follows
            return
        if not (self._head and self._waiter is not None and self._waiter.done()):
            self._finish()

    # --- use --------------------------------------------------------------------------------
    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
            waiter.set_result(Response(self._status, self._headers, body))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, data: bytes, head: bool) -> asyncio.Future[Response]:
        assert self._transport is not None
        self._head = head
        self._headers_done = False
        self._until_close = False
        self._waiter = self._loop.create_future()
        self._transport.write(data)
        return self._waiter

    def expire(self) -> None:
        """The call's time is up: fail the waiter and drop the connection."""
        self._fail(errors.Timeout("redkit: the server did not answer in time (the outcome is unknown)", status=None))
        self.close()

    def close(self) -> None:
        self.closed = True
        self.keep_alive = False
        if self._transport is not None:
            self._transport.close()


class _Pool:
    """Keep-alive connections to one server, at most ``max_size`` at once."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        ssl: Optional[_ssl.SSLContext],
        max_size: int,
        idle_timeout: float,
    ) -> None:
        self._loop = loop
        self._host = host
        self._port = port
        self._ssl = ssl
        self._max = max_size
        self._idle_timeout = idle_timeout
        self._idle: List[_Connection] = []
        self._size = 0
        self._waiters: Deque[asyncio.Future[None]] = deque()

    async def acquire(self, connect_timeout: float) -> Tuple[_Connection, bool]:
        """A connection and whether it was used before."""
        while True:
            now = self._loop.time()
            while self._idle:
                conn = self._idle.pop()
                if conn.closed or now - conn.idle_since > self._idle_timeout:
                    conn.close()
                    self._size -= 1
                    continue
                return conn, True
            if self._size < self._max:
                break
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if not waiter.cancelled() and waiter.done():
                    self._wake()  # pass the wake-up on
                raise
        self._size += 1
        try:
            _, conn = await asyncio.wait_for(
                self._loop.create_connection(lambda: _Connection(self._loop), self._host, self._port, ssl=self._ssl),
                connect_timeout,
            )
        except BaseException:
            self._size -= 1
            self._wake()
            raise
        return conn, False

    def release(self, conn: _Connection, reuse: bool) -> None:
        if reuse and conn.keep_alive and not conn.closed:
            conn.idle_since = self._loop.time()
            self._idle.append(conn)
        else:
            conn.close()
            self._size -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._size -= len(self._idle)
        self._idle.clear()


class _Endpoint:
    __slots__ = ("base", "down_until", "failures", "host", "host_header", "index", "port", "ssl", "url")

    def __init__(self, index: int, url: str, ssl_context: Optional[_ssl.SSLContext]) -> None:
        self.index = index
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"redkit: {url!r} is not an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError(f"redkit: {url!r} names no host")
        self.url = url
        self.host = parts.hostname
        self.ssl: Optional[_ssl.SSLContext] = None
        if parts.scheme == "https":
            self.ssl = ssl_context or _ssl.create_default_context()
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if parts.scheme == "https" else 80
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        self.down_until = 0.0
        self.failures = 0


class Transport:
    """Requests to one of several redkit servers, with failover and safe retries.

    ``safe`` calls (reads, and writes that are idempotent: redkit's writes repeat safely)
    are retried after a lost connection, a timeout (on another server when there is one) or
    a 503, with jittered backoff, at most ``retries`` times. Other calls (a rate-limit
    check, a lock acquire, a session create or rotate, a job fetch) are retried only when
    the request provably did nothing: no connection could be made, or the server answered
    503 without the words "may or may not" (it did not run). A 503 after the retries, or
    one an unsafe call cannot retry, is raised as :class:`redkit.Unavailable`.
    """

    def __init__(
        self,
        urls: Union[str, Sequence[str]],
        *,
        api_key: Optional[str] = None,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        max_connections: int = 100,
        retries: int = 2,
        idle_timeout: float = 30.0,
        ssl_context: Optional[_ssl.SSLContext] = None,
    ) -> None:
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise ValueError("redkit: give at least one server URL")
        self._endpoints = [_Endpoint(i, u, ssl_context) for i, u in enumerate(urls)]
        if api_key is not None and any(c in api_key for c in "\r\n"):
            raise ValueError("redkit: the API key must not contain line breaks")
        self._auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.retries = retries
        self.idle_timeout = idle_timeout
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_pools: Optional[List[_Pool]] = None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, List[_Pool]] = weakref.WeakKeyDictionary()
        self._closed = False

    @property
    def urls(self) -> List[str]:
        return [e.url for e in self._endpoints]

    def _pools(self) -> Tuple[asyncio.AbstractEventLoop, List[_Pool]]:
        """This event loop's pools (one per server): a client may serve several loops (each
        gets its own connections), e.g. ``asyncio.run`` twice, or tests."""
        loop = asyncio.get_running_loop()
        if loop is self._loop and self._loop_pools is not None:
            return loop, self._loop_pools
        pools = self._by_loop.get(loop)
        if pools is None:
            pools = [
                _Pool(loop, ep.host, ep.port, ep.ssl, self.max_connections, self.idle_timeout) for ep in self._endpoints
            ]
            self._by_loop[loop] = pools
        self._loop, self._loop_pools = loop, pools
        return loop, pools

    def _order(self, now: float) -> List[_Endpoint]:
        up = [e for e in self._endpoints if e.down_until <= now]
        down = sorted((e for e in self._endpoints if e.down_until > now), key=lambda e: e.down_until)
        return up + down

    def _down(self, ep: _Endpoint, now: float) -> None:
        ep.failures += 1
        ep.down_until = now + min(10.0, 0.25 * 2 ** min(ep.failures, 8))

    def encode(
        self,
        ep: _Endpoint,
        method: str,
        path: str,
        query: Optional[Mapping[str, QueryValue]],
        body: Any,
    ) -> bytes:
        target = ep.base + path
        if query:
            items = [(k, _qv(v)) for k, v in query.items() if v is not None]
            if items:
                target += "?" + urlencode(items, quote_via=quote)
        head = f"{method} {target} HTTP/1.1\r\nHost: {ep.host_header}\r\n{self._auth}"
        if body is _NO_BODY:
            if method in ("GET", "HEAD"):
                return (head + "\r\n").encode()
            return (head + "content-length: 0\r\n\r\n").encode()
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return (head + f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n").encode() + payload

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, QueryValue]] = None,
        body: Any = _NO_BODY,
        safe: bool,
        wait: float = 0.0,
        timeout: Optional[float] = None,
    ) -> Response:
        """Sends one call; returns the server's answer (any status but an exhausted 503).

        ``wait`` is how long the server may hold the call on purpose (a long poll), added
        to the timeout of each attempt.
        """
        if self._closed:
            raise errors.Error("redkit: the client is closed", code="closed")
        loop, pools = self._pools()
        per_attempt = (self.timeout if timeout is None else timeout) + max(0.0, wait)
        head = method == "HEAD"
        order = self._order(loop.time())
        n = len(order)
        i = 0
        retries = self.retries
        unreachable = 0
        backoff = 0.05
        last: Optional[BaseException] = None
        while True:
            ep = order[i % n]
            i += 1
            pool = pools[ep.index]
            try:
                conn, _reused = await pool.acquire(self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as e:
                self._down(ep, loop.time())
                last = e
                unreachable += 1
                if unreachable % n != 0:
                    continue  # the next server: nothing was sent
                if retries > 0:
                    retries -= 1
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff *= 4
                    continue
                raise errors.ConnectError(
                    f"redkit: no server reachable ({', '.join(e.url for e in order)}): {last}",
                    status=None,
                ) from None
            data = self.encode(ep, method, path, query, body)
            timer = loop.call_later(per_attempt, conn.expire)
            try:
                response = await conn.send(data, head)
            except errors.Timeout as e:
                pool.release(conn, False)
                if safe and n > 1 and retries > 0:
                    retries -= 1
                    self._down(ep, loop.time())
                    last = e
                    continue
                raise
            except _ConnectionLost as e:
                pool.release(conn, False)
                if safe and retries > 0:
                    retries -= 1
                    last = e
                    continue
                raise errors.Unavailable(
                    f"redkit: the connection to {ep.url} broke before the answer; the call may or may not have "
                    "taken effect",
                    indeterminate=True,
                    status=None,
                ) from None
            except BaseException:
                pool.release(conn, False)  # cancelled mid-call: its answer could still come
                raise
            finally:
                timer.cancel()
            pool.release(conn, True)
            if ep.failures:
                ep.failures = 0
                ep.down_until = 0.0
            if response.status == 503 and retries > 0:
                if safe or b"may or may not" not in response.body:
                    retries -= 1
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff *= 4
                    continue
            return response

    async def aclose(self) -> None:
        """Closes the connections of the running loop's pools (others end with their loop)."""
        self._closed = True
        pools = self._by_loop.pop(asyncio.get_running_loop(), None)
        self._loop = self._loop_pools = None
        for pool in pools or ():
            pool.close()

    def reopen(self) -> None:
        self._closed = False


def _qv(v: QueryValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if v != int(v) else str(int(v))
    return str(v)
