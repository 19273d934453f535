"""``redkit.Client``: the synchronous twin of ``AsyncClient``, with the same surface.

It runs an :class:`AsyncClient` on a private event loop in a daemon thread (one per
``Client``) and waits for each call's result, so both share one implementation (transport,
retries, failover) and the lock watchdog keeps renewing while your thread works. Decorated
functions (``@rk.cache(ns).cached``, ``invalidates``, ``@rk.ratelimit.limit``) are plain
functions and run in the caller's thread. Safe to share between threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import ssl as _ssl
import threading
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)

from . import errors
from ._keys import Binder, KeySpec, TagsSpec, as_list
from .cache import Cache, Claim
from .channels import Channels, Gap, History, Message, Position
from .client import AsyncClient
from .counters import Counters, CounterValues, Series, When
from .jobs import Enqueued, Job, JobInfo, JobSpec, Queue, RunAt
from .lists import ListPage, Lists
from .locks import Lock
from .ratelimit import Decision, RateLimits
from .records import (
    Collection,
    CollectionInfo,
    Collections,
    Incremented,
    IndexSpec,
    RangeSpec,
    Record,
    RecordPage,
    Written,
)
from .sessions import Session, Sessions

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    P = ParamSpec("P")

T = TypeVar("T")
log = logging.getLogger("redkit")


class _Portal:
    """An event loop in a daemon thread, and a way to run coroutines on it and wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="redkit-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.get_ident() == self._thread.ident:
            coro.close()
            raise RuntimeError("redkit.Client: a call from its own event loop would wait forever")
        if self.loop.is_closed():
            coro.close()
            raise errors.Error("redkit: the client is closed", code="closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Client:
    """The synchronous redkit client: ``with redkit.Client(urls, api_key) as rk:``.

    Same arguments and surface as :class:`redkit.AsyncClient`, without ``await``.
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
        self.async_client = AsyncClient(
            urls,
            api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            max_connections=max_connections,
            ssl_context=ssl_context,
        )
        self._portal = _Portal()
        self._caches: Dict[str, SyncCache] = {}
        self.sessions = SyncSessions(self._portal, self.async_client.sessions)
        self.ratelimit = SyncRateLimits(self._portal, self.async_client.ratelimit)
        self.channels = SyncChannels(self._portal, self.async_client.channels)
        self.collections = SyncCollections(self._portal, self.async_client.collections)
        self.lists = SyncLists(self._portal, self.async_client.lists)
        self.counters = SyncCounters(self._portal, self.async_client.counters)

    @property
    def urls(self) -> Sequence[str]:
        return self.async_client.urls

    def cache(self, ns: str) -> SyncCache:
        c = self._caches.get(ns)
        if c is None:
            c = self._caches[ns] = SyncCache(self._portal, self.async_client.cache(ns))
        return c

    def queue(self, name: str) -> SyncQueue:
        return SyncQueue(self._portal, self.async_client.queue(name))

    def collection(self, name: str) -> SyncCollection:
        """The records collection ``name``."""
        return SyncCollection(self._portal, self.async_client.collection(name))

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
    ) -> SyncLock:
        """A lock for ``with``; the watchdog renews it from the client's thread."""
        return SyncLock(
            self._portal,
            self.async_client.lock(
                name, ttl, wait, permits=permits, local_fallback=local_fallback, watchdog=watchdog, on_lost=on_lost
            ),
        )

    def health(self) -> Any:
        return self._portal.call(self.async_client.health())

    def ready(self) -> Any:
        return self._portal.call(self.async_client.ready())

    def run(self, awaitable: Awaitable[T]) -> T:
        """Runs a coroutine of ``async_client`` on the client's loop and waits for it."""

        async def wrap() -> T:
            return await awaitable

        return self._portal.call(wrap())

    def close(self) -> None:
        if not self._portal.loop.is_closed():
            try:
                self._portal.call(self.async_client.aclose())
            finally:
                self._portal.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"redkit.Client({self.urls!r})"


class SyncCache:
    """:class:`redkit.cache.Cache` without ``await``."""

    def __init__(self, portal: _Portal, cache: Cache) -> None:
        self._p = portal
        self._c = cache
        self.ns = cache.ns
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def get(self, key: str, default: Any = None) -> Any:
        return self._p.call(self._c.get(key, default))

    def set(
        self,
        key: str,
        value: Any,
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
    ) -> None:
        self._p.call(self._c.set(key, value, ttl, tags=tags, stale_ttl=stale_ttl))

    def delete(self, key: str) -> bool:
        return self._p.call(self._c.delete(key))

    def exists(self, key: str) -> bool:
        return self._p.call(self._c.exists(key))

    def ttl(self, key: str) -> Optional[float]:
        return self._p.call(self._c.ttl(key))

    def get_many(self, keys: Iterable[str]) -> Dict[str, Any]:
        return self._p.call(self._c.get_many(list(keys)))

    def set_many(
        self,
        values: Mapping[str, Any],
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
    ) -> int:
        return self._p.call(self._c.set_many(values, ttl, tags=tags, stale_ttl=stale_ttl))

    def invalidate_tag(self, tag: str) -> int:
        return self._p.call(self._c.invalidate_tag(tag))

    def invalidate_pattern(self, pattern: str) -> int:
        return self._p.call(self._c.invalidate_pattern(pattern))

    def clear(self) -> int:
        return self._p.call(self._c.clear())

    def keys(self, pattern: Optional[str] = None, *, page: int = 1000) -> List[str]:
        async def collect() -> List[str]:
            return [k async for k in self._c.keys(pattern, page=page)]

        return self._p.call(collect())

    def claim(self, key: str, *, claim_ttl: Optional[float] = None, wait: Optional[float] = None) -> Claim:
        return self._p.call(self._c.claim(key, claim_ttl=claim_ttl, wait=wait))

    def fill(
        self,
        key: str,
        value: Any,
        fill_token: str,
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
    ) -> None:
        self._p.call(self._c.fill(key, value, fill_token, ttl, tags=tags, stale_ttl=stale_ttl))

    def release_claim(self, key: str, fill_token: str) -> None:
        self._p.call(self._c.release_claim(key, fill_token))

    def get_or_set(
        self,
        key: str,
        loader: Callable[[], T],
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
        soft_timeout: Optional[float] = None,
        wait: Optional[float] = None,
        claim_ttl: Optional[float] = None,
        fail_open: bool = True,
    ) -> T:
        """As :meth:`redkit.cache.Cache.get_or_set`, with a plain ``loader`` run in this thread
        (in a helper thread when ``soft_timeout`` is given and a stale value can be served)."""
        try:
            answer = self.claim(key, claim_ttl=claim_ttl, wait=wait)
        except errors.Unavailable:
            if not fail_open:
                raise
            log.warning("redkit cache %s: unavailable, loading %r without the cache", self.ns, key)
            return loader()
        if answer.state == "fresh":
            return answer.value  # type: ignore[no-any-return]
        if answer.state == "busy":
            if answer.has_stale:
                return answer.stale  # type: ignore[no-any-return]
            return loader()
        token = answer.fill_token
        assert token is not None

        def load_and_fill() -> T:
            try:
                value = loader()
            except BaseException:
                try:
                    self.release_claim(key, token)
                except errors.Error as e:
                    log.debug("redkit cache %s: releasing the claim on %r failed (%r)", self.ns, key, e)
                raise
            try:
                self.fill(key, value, token, ttl, tags=tags, stale_ttl=stale_ttl)
            except errors.Error as e:
                log.warning("redkit cache %s: could not store %r (%r)", self.ns, key, e)
            return value

        if not answer.has_stale:
            return load_and_fill()
        try:
            if soft_timeout is None:
                return load_and_fill()
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="redkit-loader")
            return self._executor.submit(load_and_fill).result(timeout=soft_timeout)
        except concurrent.futures.TimeoutError:
            log.info("redkit cache %s: loader of %r past its soft timeout; serving the stale value", self.ns, key)
            return answer.stale  # type: ignore[no-any-return]
        except Exception as e:
            log.warning("redkit cache %s: loader of %r failed (%r); serving the stale value", self.ns, key, e)
            return answer.stale  # type: ignore[no-any-return]

    def cached(
        self,
        ttl: Optional[float] = 300,
        *,
        tags: TagsSpec = None,
        key: KeySpec = None,
        stale_ttl: Optional[float] = None,
        soft_timeout: Optional[float] = None,
        wait: Optional[float] = None,
        claim_ttl: Optional[float] = None,
        fail_open: bool = True,
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """Get-or-set for a plain function (see :meth:`redkit.cache.Cache.cached`)."""
        fail_safe = ttl if stale_ttl is None else stale_ttl

        def decorate(func: Callable[P, T]) -> Callable[P, T]:
            binder = Binder(func)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return self.get_or_set(
                    binder.key(key, args, kwargs),
                    lambda: func(*args, **kwargs),
                    ttl,
                    tags=binder.tags(tags, args, kwargs),
                    stale_ttl=fail_safe or None,
                    soft_timeout=soft_timeout,
                    wait=wait,
                    claim_ttl=claim_ttl,
                    fail_open=fail_open,
                )

            return wrapper

        return decorate

    def invalidates(
        self,
        keys: Optional[Sequence[Union[str, Callable[..., Any]]]] = None,
        *,
        tags: Optional[Sequence[Union[str, Callable[..., Any]]]] = None,
        patterns: Optional[Sequence[Union[str, Callable[..., Any]]]] = None,
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """See :meth:`redkit.cache.Cache.invalidates`."""
        keys, tags, patterns = as_list(keys), as_list(tags), as_list(patterns)

        def decorate(func: Callable[P, T]) -> Callable[P, T]:
            binder = Binder(func)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                result = func(*args, **kwargs)
                c = self._c

                async def invalidate() -> None:
                    calls: List[Awaitable[Any]] = [c.delete(k) for k in binder.keys(keys, args, kwargs)]
                    calls += [c.invalidate_tag(t) for t in binder.keys(tags, args, kwargs)]
                    calls += [c.invalidate_pattern(p) for p in binder.keys(patterns, args, kwargs)]
                    await asyncio.gather(*calls)

                self._p.call(invalidate())
                return result

            return wrapper

        return decorate


class SyncSessions:
    """:class:`redkit.sessions.Sessions` without ``await``."""

    def __init__(self, portal: _Portal, sessions: Sessions) -> None:
        self._p = portal
        self._s = sessions

    def create(
        self,
        data: Optional[Mapping[str, Any]] = None,
        user: Optional[str] = None,
        *,
        idle_ttl: Optional[int] = None,
        absolute_ttl: Optional[int] = None,
    ) -> Session:
        return self._p.call(self._s.create(data, user, idle_ttl=idle_ttl, absolute_ttl=absolute_ttl))

    def get(self, session_id: str) -> Optional[Session]:
        return self._p.call(self._s.get(session_id))

    def update(self, session_id: str, data: Mapping[str, Any]) -> Session:
        return self._p.call(self._s.update(session_id, data))

    def rotate(self, session_id: str) -> Session:
        return self._p.call(self._s.rotate(session_id))

    def delete(self, session_id: str) -> bool:
        return self._p.call(self._s.delete(session_id))

    def list(self, user: str) -> List[Session]:
        return self._p.call(self._s.list(user))

    def revoke_all(self, user: str) -> int:
        return self._p.call(self._s.revoke_all(user))


class SyncChannels:
    """:class:`redkit.channels.Channels` without ``await``; ``subscribe`` is a blocking iterator."""

    def __init__(self, portal: _Portal, channels: Channels) -> None:
        self._p = portal
        self._c = channels

    def publish(self, channel: str, data: Any, idempotency_key: Optional[str] = None) -> Position:
        return self._p.call(self._c.publish(channel, data, idempotency_key))

    def history(
        self, channel: str, limit: int = 100, since: Union[Position, str, None] = None, reverse: bool = False
    ) -> History:
        return self._p.call(self._c.history(channel, limit, since, reverse))

    def subscribe(self, channel: str, since: Union[Position, str, None] = None) -> Iterator[Union[Message, Gap]]:
        """Blocks for each next event; closing the iterator (or leaving the ``for``) ends it."""
        sub = self._c.subscribe(channel, since)
        try:
            while True:
                try:
                    yield self._p.call(sub.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._p.call(sub.aclose())


class SyncRateLimits:
    """:class:`redkit.ratelimit.RateLimits` without ``await``."""

    def __init__(self, portal: _Portal, limits: RateLimits) -> None:
        self._p = portal
        self._r = limits

    def check(self, policy: str, key: str, cost: int = 1) -> Decision:
        return self._p.call(self._r.check(policy, key, cost))

    def hit(self, policy: str, key: str, cost: int = 1) -> Decision:
        return self._p.call(self._r.hit(policy, key, cost))

    def define(self, name: str, limit: int, period: float, **options: Any) -> Dict[str, Any]:
        return self._p.call(self._r.define(name, limit, period, **options))

    def policy(self, name: str) -> Optional[Dict[str, Any]]:
        return self._p.call(self._r.policy(name))

    def policies(self) -> List[Dict[str, Any]]:
        return self._p.call(self._r.policies())

    def delete_policy(self, name: str) -> bool:
        return self._p.call(self._r.delete_policy(name))

    def limit(
        self, policy: str, key: Union[str, Callable[..., str]], *, cost: int = 1
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """See :meth:`redkit.ratelimit.RateLimits.limit` (``key`` callables are plain here)."""

        def decorate(func: Callable[P, T]) -> Callable[P, T]:
            binder = Binder(func)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                k = key(*args, **kwargs) if callable(key) else key.format(**binder.arguments(args, kwargs))
                self.hit(policy, str(k), cost)
                return func(*args, **kwargs)

            return wrapper

        return decorate


class SyncLock:
    """:class:`redkit.locks.Lock` for ``with``."""

    def __init__(self, portal: _Portal, lock: Lock) -> None:
        self._p = portal
        self._l = lock
        self._lost = threading.Event()
        user_on_lost = lock.on_lost

        def on_lost(lk: Lock) -> Any:
            self._lost.set()
            return user_on_lost(lk) if user_on_lost is not None else None

        lock.on_lost = on_lost

    name = property(lambda self: self._l.name)
    fence = property(lambda self: self._l.fence)
    token = property(lambda self: self._l.token)
    expires_at_ms = property(lambda self: self._l.expires_at_ms)

    @property
    def is_lost(self) -> bool:
        return self._lost.is_set()

    def wait_lost(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the lease is lost (or ``timeout``); whether it was."""
        return self._lost.wait(timeout)

    def check(self) -> None:
        if self.is_lost:
            raise errors.LockLost(f"redkit: the lease on lock {self._l.name!r} was lost")

    def acquire(self) -> SyncLock:
        self._p.call(self._l.acquire())
        return self

    def extend(self, ttl: Optional[float] = None) -> None:
        self._p.call(self._l.extend(ttl))

    def release(self) -> bool:
        return self._p.call(self._l.release())

    def __enter__(self) -> SyncLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._p.call(self._l.__aexit__(exc_type, exc, tb))


class SyncQueue:
    """:class:`redkit.jobs.Queue` without ``await``."""

    def __init__(self, portal: _Portal, queue: Queue) -> None:
        self._p = portal
        self._q = queue
        self.name = queue.name

    def enqueue(
        self,
        payload: Any,
        *,
        delay: Optional[float] = None,
        run_at: Optional[RunAt] = None,
        priority: Optional[int] = None,
        unique_key: Optional[str] = None,
        max_attempts: Optional[int] = None,
        id: Optional[str] = None,  # noqa: A002
        backoff: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Enqueued:
        return self._p.call(
            self._q.enqueue(
                payload,
                delay=delay,
                run_at=run_at,
                priority=priority,
                unique_key=unique_key,
                max_attempts=max_attempts,
                id=id,
                backoff=backoff,
                timeout=timeout,
            )
        )

    def enqueue_task(self, task: str, args: Any = None, **options: Any) -> Enqueued:
        return self._p.call(self._q.enqueue_task(task, args, **options))

    def enqueue_batch(self, jobs: Iterable[Union[JobSpec, Any]]) -> List[Enqueued]:
        return self._p.call(self._q.enqueue_batch(list(jobs)))

    def fetch(self, worker: str, max: int = 1, *, lease: Optional[float] = None, wait: float = 0.0) -> List[Job]:  # noqa: A002
        return self._p.call(self._q.fetch(worker, max, lease=lease, wait=wait))

    def ack(self, job_id: str, token: str) -> str:
        return self._p.call(self._q.ack(job_id, token))

    def fail(self, job_id: str, token: str, error: str) -> str:
        return self._p.call(self._q.fail(job_id, token, error))

    def release(self, job_id: str, token: str) -> str:
        return self._p.call(self._q.release(job_id, token))

    def heartbeat(self, job_id: str, token: str, lease: Optional[float] = None) -> int:
        return self._p.call(self._q.heartbeat(job_id, token, lease))

    def progress(self, job_id: str, token: str, progress: Any, lease: Optional[float] = None) -> int:
        return self._p.call(self._q.progress(job_id, token, progress, lease))

    def get(self, job_id: str) -> Optional[JobInfo]:
        return self._p.call(self._q.get(job_id))

    def list(self, state: Optional[str] = None, *, offset: int = 0, limit: int = 100) -> List[JobInfo]:
        return self._p.call(self._q.list(state, offset=offset, limit=limit))

    def stats(self) -> Dict[str, Any]:
        return self._p.call(self._q.stats())

    def pause(self) -> None:
        self._p.call(self._q.pause())

    def resume(self) -> None:
        self._p.call(self._q.resume())

    def dead(self, *, offset: int = 0, limit: int = 100) -> List[JobInfo]:
        return self._p.call(self._q.dead(offset=offset, limit=limit))

    def retry_dead(self, job_id: Optional[str] = None) -> int:
        return self._p.call(self._q.retry_dead(job_id))

    def purge_dead(self, job_id: Optional[str] = None) -> int:
        return self._p.call(self._q.purge_dead(job_id))


class SyncCollection:
    """:class:`redkit.records.Collection` without ``await``; ``scan`` is a blocking iterator."""

    def __init__(self, portal: _Portal, collection: Collection) -> None:
        self._p = portal
        self._c = collection
        self.name = collection.name

    def define(
        self,
        indexes: Optional[IndexSpec] = None,
        *,
        ttl: Optional[int] = None,
        max_bytes: Optional[int] = None,
        redact: Optional[Iterable[Mapping[str, Any]]] = None,
    ) -> CollectionInfo:
        return self._p.call(self._c.define(indexes, ttl=ttl, max_bytes=max_bytes, redact=redact))

    def info(self) -> Optional[CollectionInfo]:
        return self._p.call(self._c.info())

    def drop(self) -> None:
        self._p.call(self._c.drop())

    def put(self, record_id: str, data: Mapping[str, Any], *, if_version: Optional[int] = None) -> Written:
        return self._p.call(self._c.put(record_id, data, if_version=if_version))

    def create(self, record_id: str, data: Mapping[str, Any]) -> Written:
        return self._p.call(self._c.create(record_id, data))

    def get(self, record_id: str) -> Optional[Record]:
        return self._p.call(self._c.get(record_id))

    def patch(self, record_id: str, data: Mapping[str, Any], *, if_version: Optional[int] = None) -> Written:
        return self._p.call(self._c.patch(record_id, data, if_version=if_version))

    def delete(self, record_id: str) -> None:
        self._p.call(self._c.delete(record_id))

    def incr(self, record_id: str, field: str, by: int = 1) -> Incremented:
        return self._p.call(self._c.incr(record_id, field, by))

    def get_many(self, record_ids: Iterable[str]) -> List[Optional[Record]]:
        return self._p.call(self._c.get_many(list(record_ids)))

    def query(
        self,
        where: Optional[Mapping[str, Any]] = None,
        *,
        range: Optional[RangeSpec] = None,  # noqa: A002 - the contract's word
        order: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> RecordPage:
        return self._p.call(self._c.query(where, range=range, order=order, limit=limit, cursor=cursor))

    def scan(
        self,
        where: Optional[Mapping[str, Any]] = None,
        *,
        range: Optional[RangeSpec] = None,  # noqa: A002 - the contract's word
        order: Optional[str] = None,
        page: int = 100,
        cursor: Optional[str] = None,
    ) -> Iterator[Record]:
        """Every record of the query, fetching a page at a time as the iteration needs it."""
        it = self._c.scan(where, range=range, order=order, page=page, cursor=cursor)

        async def next_record() -> Record:
            return await it.__anext__()

        try:
            while True:
                try:
                    yield self._p.call(next_record())
                except StopAsyncIteration:
                    return
        finally:
            self._p.call(it.aclose())


class SyncCollections:
    """:class:`redkit.records.Collections` without ``await``."""

    def __init__(self, portal: _Portal, collections: Collections) -> None:
        self._p = portal
        self._c = collections

    def list(self) -> List[CollectionInfo]:
        return self._p.call(self._c.list())


class SyncLists:
    """:class:`redkit.lists.Lists` without ``await``."""

    def __init__(self, portal: _Portal, lists: Lists) -> None:
        self._p = portal
        self._l = lists

    def push(self, name: str, items: Sequence[Any], *, cap: int, ttl: Optional[int] = None) -> int:
        return self._p.call(self._l.push(name, items, cap=cap, ttl=ttl))

    def get(self, name: str, *, offset: int = 0, limit: int = 100) -> ListPage:
        return self._p.call(self._l.get(name, offset=offset, limit=limit))

    def delete(self, name: str) -> None:
        self._p.call(self._l.delete(name))


class SyncCounters:
    """:class:`redkit.counters.Counters` without ``await``."""

    def __init__(self, portal: _Portal, counters: Counters) -> None:
        self._p = portal
        self._c = counters

    def incr(
        self, name: str, by: int = 1, *, labels: Optional[Mapping[str, str]] = None, at: Optional[When] = None
    ) -> CounterValues:
        return self._p.call(self._c.incr(name, by, labels=labels, at=at))

    def range(
        self,
        name: str,
        granularity: str = "minute",
        *,
        start: Optional[When] = None,
        end: Optional[When] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Series:
        return self._p.call(self._c.range(name, granularity, start=start, end=end, labels=labels))

    def labels(self, name: str) -> List[Dict[str, str]]:
        return self._p.call(self._c.labels(name))
