"""Locks and semaphores: ``rk.lock(name, ttl=, wait=)``.

Promises: while a :class:`Lock` is held its watchdog renews the lease; the moment the lease
cannot be trusted any more (a renewal refused, or renewals failing until the lease must have
ended) the lock says so (``lost``, ``on_lost``, ``check()``); an acquire is never repeated
once sent; a release never releases another holder's lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Set, Type

from . import errors
from ._http import seg

if TYPE_CHECKING:
    from .client import AsyncClient

log = logging.getLogger("redkit")


class Lock:
    """A distributed lock (or one of ``permits`` semaphore permits), held under a lease.

    ``async with rk.lock("invoice:42", ttl=5, wait=2) as lock:`` acquires it (raising
    :class:`redkit.Conflict` if it is still held after ``wait`` seconds), renews the lease
    every ``ttl / 3`` seconds while the block runs (the watchdog), and releases it at the
    end. ``lock.fence`` is the fencing token (strictly increasing per name): pass it to the
    store you protect. If a renewal is refused, or renewals keep failing until the lease
    must have ended, the lease is lost: ``lock.lost`` (an ``asyncio.Event``) is set,
    ``lock.is_lost`` turns true, ``on_lost`` is called, and :meth:`check` raises
    :class:`redkit.LockLost` — stop writing under it.
    """

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        *,
        ttl: float = 30.0,
        wait: float = 0.0,
        permits: int = 1,
        local_fallback: bool = False,
        watchdog: bool = True,
        on_lost: Optional[Callable[[Lock], Any]] = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("redkit: a lock's ttl must be > 0 seconds")
        self._client = client
        self.name = name
        self.ttl = ttl
        self.wait = wait
        self.permits = permits
        self.local_fallback = local_fallback
        self.watchdog = watchdog
        self.on_lost = on_lost
        self.token: Optional[str] = None
        self.fence: int = 0
        self.expires_at_ms: int = 0
        self._deadline = 0.0  # monotonic time by which the lease surely ended without renewal
        self._lost: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task[None]] = None
        self._path = f"/v1/locks/{seg(name)}/"

    @property
    def lost(self) -> asyncio.Event:
        """Set once the lease is lost."""
        if self._lost is None:
            self._lost = asyncio.Event()
        return self._lost

    @property
    def is_lost(self) -> bool:
        return self._lost is not None and self._lost.is_set()

    @property
    def held(self) -> bool:
        return self.token is not None and not self.is_lost

    def check(self) -> None:
        """Raises :class:`redkit.LockLost` if the lease was lost."""
        if self.is_lost:
            raise errors.LockLost(f"redkit: the lease on lock {self.name!r} was lost")

    async def acquire(self) -> Lock:
        body: Dict[str, Any] = {"ttl_ms": _ms(self.ttl), "wait_ms": _ms(self.wait)}
        if self.permits != 1:
            body["permits"] = self.permits
        if self.local_fallback:
            body["local_fallback"] = True
        started = time.monotonic()
        # Not retried once sent: a lost answer could leave the lock held by a token nobody has.
        answer = await self._client.call("POST", self._path + "acquire", body=body, safe=False, wait=self.wait)
        self.token = answer["token"]
        self.fence = int(answer["fence"])
        self.expires_at_ms = int(answer["expires_at_ms"])
        # When the lease surely ends unless renewed: it began after the request left; after
        # a long wait, shortly before the answer came (margin: a tenth of the ttl).
        now = time.monotonic()
        elapsed = now - started
        self._deadline = started + self.ttl if elapsed <= self.ttl / 3 else now + self.ttl * 0.9
        self._lost = asyncio.Event()
        if self.watchdog:
            self._task = asyncio.ensure_future(self._watch())
        return self

    async def extend(self, ttl: Optional[float] = None) -> None:
        """Renews the lease for ``ttl`` seconds from now (default: the lock's ttl).
        :class:`redkit.Conflict` if the token no longer holds it."""
        if self.token is None:
            raise errors.Error(f"redkit: lock {self.name!r} is not held", code="not_held")
        ttl = self.ttl if ttl is None else ttl
        body: Dict[str, Any] = {"token": self.token, "ttl_ms": _ms(ttl)}
        if self.local_fallback:
            body["local_fallback"] = True
        sent = time.monotonic()
        answer = await self._client.call("POST", self._path + "extend", body=body, safe=True)
        self.expires_at_ms = int(answer["expires_at_ms"])
        self._deadline = sent + ttl

    async def release(self) -> bool:
        """Gives the lock back; whether this token still held it."""
        await self._stop_watchdog()
        if self.token is None:
            return False
        body: Dict[str, Any] = {"token": self.token}
        if self.local_fallback:
            body["local_fallback"] = True
        token = self.token
        self.token = None
        try:
            answer = await self._client.call("POST", self._path + "release", body=body, safe=True)
        except BaseException:
            self.token = token
            raise
        return bool(answer["released"])

    async def _watch(self) -> None:
        interval = self.ttl / 3
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.extend()
                    interval = self.ttl / 3
                except errors.Conflict:
                    self._mark_lost("the server refused to renew it (held by another token now)")
                    return
                except (errors.Unavailable, OSError) as e:
                    left = self._deadline - time.monotonic()
                    if left <= 0:
                        self._mark_lost(f"renewals failed until the lease ended ({e!r})")
                        return
                    interval = min(self.ttl / 10, max(0.01, left / 2))
                    log.warning("redkit lock %s: renewal failed (%r); retrying in %.2f s", self.name, e, interval)
                except errors.Error as e:
                    self._mark_lost(f"renewal failed ({e!r})")
                    return
        except asyncio.CancelledError:
            pass

    def _mark_lost(self, why: str) -> None:
        log.warning("redkit lock %s: lease lost: %s", self.name, why)
        self.lost.set()
        if self.on_lost is not None:
            try:
                result = self.on_lost(self)
                if asyncio.iscoroutine(result):
                    _keep(asyncio.ensure_future(result))
            except Exception:
                log.exception("redkit lock %s: on_lost failed", self.name)

    async def _stop_watchdog(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> Lock:
        return await self.acquire()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            await self.release()
        except errors.Error as e:
            if exc is None:
                raise
            log.warning("redkit lock %s: release failed (%r)", self.name, e)

    def __repr__(self) -> str:
        return f"redkit.Lock({self.name!r}, fence={self.fence}, held={self.held})"


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


_tasks: Set[asyncio.Future[Any]] = set()


def _keep(task: asyncio.Future[Any]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
