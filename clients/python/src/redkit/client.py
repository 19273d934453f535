"""``redkit.AsyncClient``: the asyncio client — one object per process, giving each
capability (``cache``, ``sessions``, ``ratelimit``, ``lock``, ``queue``, ``channels``,
``collection``, ``lists``, ``counters``) over
one transport with failover between servers and retries only where they are safe."""

from __future__ import annotations

import ssl as _ssl
from types import TracebackType
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Type, Union

from . import errors
from ._http import _NO_BODY, QueryValue, Response, Transport
from .cache import Cache
from .channels import Channels
from .counters import Counters
from .jobs import Queue
from .lists import Lists
from .locks import Lock
from .ratelimit import RateLimits
from .records import Collection, Collections
from .sessions import Sessions


class AsyncClient:
    """The redkit client for asyncio code.

    ``urls`` is one server URL or several (a list, or a comma-separated string): calls go
    to the first that answers, and a server that refuses connections is skipped for a while
    (failover). ``api_key`` is sent as a bearer token. ``timeout`` bounds each attempt of a
    call in seconds (long polls add their wait to it); ``retries`` is how many more
    attempts a call may get where repeating it is safe (see the README's "Retries").

    Use it as ``async with redkit.AsyncClient(...) as rk:``, or keep one for the process and
    ``await rk.aclose()`` at the end. It binds to the event loop it is first used on.
    """

    def __init__(
        self,
        urls: Union[str, Sequence[str]] = "http://127.0.0.1:7070",
        api_key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        retries: int = 2,
        max_connections: int = 100,
        ssl_context: Optional[_ssl.SSLContext] = None,
    ) -> None:
        self._transport = Transport(
            urls,
            api_key=api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            max_connections=max_connections,
            ssl_context=ssl_context,
        )
        self._caches: Dict[str, Cache] = {}
        self._queues: Dict[str, Queue] = {}
        self._collections: Dict[str, Collection] = {}
        self.sessions = Sessions(self)
        """Sessions: ``create``, ``get``, ``update``, ``rotate``, ``delete``, ``list``, ``revoke_all``."""
        self.ratelimit = RateLimits(self)
        """Rate limits: ``check`` and policies."""
        self.channels = Channels(self)
        """Pub/sub: ``publish``, ``history``, ``subscribe``."""
        self.collections = Collections(self)
        """Records' collections: ``list``; one collection is ``collection(name)``."""
        self.lists = Lists(self)
        """Capped lists: ``push``, ``get``, ``delete``."""
        self.counters = Counters(self)
        """Time-bucketed counters: ``incr``, ``range``, ``labels``."""

    @property
    def urls(self) -> Sequence[str]:
        return self._transport.urls

    # --- capabilities -------------------------------------------------------------------------
    def cache(self, ns: str) -> Cache:
        """The cache namespace ``ns``."""
        c = self._caches.get(ns)
        if c is None:
            c = self._caches[ns] = Cache(self, ns)
        return c

    def queue(self, name: str) -> Queue:
        """The job queue ``name``."""
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue(self, name)
        return q

    def collection(self, name: str) -> Collection:
        """The records collection ``name`` (define it first: ``await c.define(...)``)."""
        c = self._collections.get(name)
        if c is None:
            c = self._collections[name] = Collection(self, name)
        return c

    def lock(
        self,
        name: str,
        ttl: float = 30.0,
        wait: float = 0.0,
        *,
        permits: int = 1,
        local_fallback: bool = False,
        watchdog: bool = True,
        on_lost: Optional[Callable[[Lock], Any]] = None,
    ) -> Lock:
        """A lock (or, with ``permits`` > 1, a semaphore) to use as ``async with``.

        ``ttl`` is the lease in seconds, renewed every ``ttl / 3`` by a watchdog while held;
        ``wait`` is how long to wait for it (0: try once; raises :class:`redkit.Conflict`
        when still held then). ``on_lost`` is called if the lease is lost while held.
        """
        return Lock(
            self,
            name,
            ttl=ttl,
            wait=wait,
            permits=permits,
            local_fallback=local_fallback,
            watchdog=watchdog,
            on_lost=on_lost,
        )

    # --- operations ---------------------------------------------------------------------------
    async def health(self) -> Any:
        """``GET /health`` of the first server that answers (its body, whatever the status)."""
        r = await self._transport.request("GET", "/health", safe=True)
        return r.json()

    async def ready(self) -> Any:
        r = await self._transport.request("GET", "/ready", safe=True)
        return r.json()

    async def openapi(self) -> Any:
        return await self.call("GET", "/openapi.json", safe=True)

    # --- plumbing -----------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, QueryValue]] = None,
        body: Any = _NO_BODY,
        safe: bool,
        wait: float = 0.0,
    ) -> Response:
        """One HTTP call (``path`` already percent-encoded); the raw answer."""
        return await self._transport.request(method, path, query=query, body=body, safe=safe, wait=wait)

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, QueryValue]] = None,
        body: Any = _NO_BODY,
        safe: bool,
        wait: float = 0.0,
    ) -> Any:
        """One HTTP call; its decoded JSON body, or the error's exception raised."""
        r = await self._transport.request(method, path, query=query, body=body, safe=safe, wait=wait)
        if r.status >= 400:
            raise r.error()
        return r.json()

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        self._transport.reopen()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"redkit.AsyncClient({self.urls!r})"


__all__ = ["AsyncClient", "errors"]
