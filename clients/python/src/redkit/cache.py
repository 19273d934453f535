"""The cache: ``rk.cache(ns)``.

Promises: values are any JSON and ``get`` answers the value or None; the get-or-set of
``get_or_set`` and ``@cached`` loads a missing key once across every caller and instance
(the server's claim protocol), serves the stale value inside the fail-safe window when the
loader fails or passes its soft timeout, and never leaves a claim held by a failed loader
(it is released, so the next caller loads at once); ``@invalidates`` removes its keys, tags
and patterns only after the decorated function returned.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    TypeVar,
    Union,
)

from . import errors
from ._http import seg
from ._keys import Binder, KeySpec, TagsSpec, as_list

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    from .client import AsyncClient

    P = ParamSpec("P")

T = TypeVar("T")
log = logging.getLogger("redkit")

_WARM_BATCH = 1000


class Claim:
    """The answer to a get-or-set claim (``POST /v1/cache/{ns}/{key}/claim``).

    ``state`` is ``"fresh"`` (``value`` holds it), ``"load"`` (this caller must load the value
    and :meth:`Cache.fill` it with ``fill_token``, or :meth:`Cache.release_claim`), or
    ``"busy"`` (another caller is loading). ``stale`` is a value past its TTL but inside its
    fail-safe window, or None.
    """

    __slots__ = ("fill_token", "stale", "state", "value")

    def __init__(self, state: str, value: Any, stale: Any, fill_token: Optional[str]) -> None:
        self.state = state
        self.value = value
        self.stale = stale
        self.fill_token = fill_token

    @property
    def has_stale(self) -> bool:
        return self.stale is not None

    def __repr__(self) -> str:
        return f"Claim({self.state!r}, value={self.value!r}, stale={self.stale!r})"


def _entry_query(
    ttl: Optional[float], tags: Optional[Sequence[str]], stale_ttl: Optional[float], fill_token: Optional[str] = None
) -> Dict[str, Any]:
    q: Dict[str, Any] = {}
    if ttl is not None:
        q["ttl_s"] = ttl
    if stale_ttl is not None:
        q["stale_ttl_s"] = stale_ttl
    if tags:
        q["tags"] = ",".join(tags)
    if fill_token is not None:
        q["fill_token"] = fill_token
    return q


class Cache:
    """One cache namespace. Values are any JSON; ``ttl`` and ``stale_ttl`` are seconds.

    ``get`` returns the value or None (so a stored JSON ``null`` reads as a miss).
    """

    def __init__(self, client: AsyncClient, ns: str) -> None:
        self._client = client
        self.ns = ns
        self._prefix = f"/v1/cache/{seg(ns)}/"
        self._background: Set[asyncio.Future[Any]] = set()

    def _path(self, key: str, suffix: str = "") -> str:
        return self._prefix + seg(key) + suffix

    # --- values ---------------------------------------------------------------------------------
    async def get(self, key: str, default: Any = None) -> Any:
        """The value, or ``default`` when there is none (or it is stale)."""
        r = await self._client.request("GET", self._path(key), safe=True)
        if r.status == 200:
            return r.json()
        if r.status == 404:
            return default
        raise r.error()

    async def set(
        self,
        key: str,
        value: Any,
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
    ) -> None:
        """Stores ``value`` for ``ttl`` seconds (server default 300), filed under ``tags``;
        ``stale_ttl`` keeps it that much longer as a fail-safe value for get-or-set."""
        await self._client.call(
            "PUT", self._path(key), query=_entry_query(ttl, as_list(tags), stale_ttl), body=value, safe=True
        )

    async def delete(self, key: str) -> bool:
        """Removes the value; whether there was one."""
        body = await self._client.call("DELETE", self._path(key), safe=True)
        return bool(body["deleted"])

    async def exists(self, key: str) -> bool:
        r = await self._client.request("HEAD", self._path(key), safe=True)
        if r.status == 200:
            return True
        if r.status == 404:
            return False
        raise r.error()

    async def ttl(self, key: str) -> Optional[float]:
        """Seconds until the value goes stale, or None when there is none."""
        r = await self._client.request("GET", self._path(key, "/ttl"), safe=True)
        if r.status == 404:
            return None
        if r.status != 200:
            raise r.error()
        return float(r.json()["ttl_ms"]) / 1000.0

    async def get_many(self, keys: Iterable[str]) -> Dict[str, Any]:
        """The values of ``keys`` that have one (concurrent GETs on pooled connections)."""
        keys = list(dict.fromkeys(keys))
        values = await asyncio.gather(*(self.get(k, _MISSING) for k in keys))
        return {k: v for k, v in zip(keys, values) if v is not _MISSING}

    async def set_many(
        self,
        values: Mapping[str, Any],
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
    ) -> int:
        """Stores every entry of ``values`` (``POST /v1/cache/warm``, 1000 per call)."""
        entries: List[Dict[str, Any]] = []
        for k, v in values.items():
            e: Dict[str, Any] = {"key": k, "value": v}
            if ttl is not None:
                e["ttl_s"] = ttl
            if stale_ttl is not None:
                e["stale_ttl_s"] = stale_ttl
            if tags:
                e["tags"] = list(tags)
            entries.append(e)
        stored = 0
        for i in range(0, len(entries), _WARM_BATCH):
            body = await self._client.call(
                "POST", "/v1/cache/warm", body={"ns": self.ns, "entries": entries[i : i + _WARM_BATCH]}, safe=True
            )
            stored += int(body["stored"])
        return stored

    async def invalidate_tag(self, tag: str) -> int:
        """Removes every value filed under ``tag``; how many."""
        return await self._clear({"ns": self.ns, "tag": tag})

    async def invalidate_pattern(self, pattern: str) -> int:
        """Removes every key matching the glob ``pattern``; how many."""
        return await self._clear({"ns": self.ns, "pattern": pattern})

    async def clear(self) -> int:
        """Removes the whole namespace; how many values."""
        return await self._clear({"ns": self.ns})

    async def _clear(self, body: Dict[str, Any]) -> int:
        answer = await self._client.call("POST", "/v1/cache/clear", body=body, safe=True)
        return int(answer["removed"])

    async def keys(self, pattern: Optional[str] = None, *, page: int = 1000) -> AsyncIterator[str]:
        """Every key (matching ``pattern``), page by page."""
        cursor: Optional[str] = None
        while True:
            body = await self._client.call(
                "GET",
                "/v1/cache/keys",
                query={"ns": self.ns, "pattern": pattern, "cursor": cursor, "limit": page},
                safe=True,
            )
            for k in body["keys"]:
                yield k
            cursor = body.get("next_cursor")
            if not cursor:
                return

    # --- get-or-set -----------------------------------------------------------------------------
    async def claim(self, key: str, *, claim_ttl: Optional[float] = None, wait: Optional[float] = None) -> Claim:
        """Asks for the value or the right to load it (see :class:`Claim`). ``claim_ttl``:
        how long the claim holds if never filled (s, default 10); ``wait``: how long to wait
        for another caller's load when no stale value can be served (s, default 5)."""
        body: Dict[str, Any] = {}
        if claim_ttl is not None:
            body["claim_ttl_ms"] = max(1, int(claim_ttl * 1000))
        if wait is not None:
            body["wait_ms"] = max(0, int(wait * 1000))
        answer = await self._client.call(
            "POST", self._path(key, "/claim"), body=body, safe=True, wait=5.0 if wait is None else wait
        )
        return Claim(answer["state"], answer.get("value"), answer.get("stale"), answer.get("fill_token"))

    async def fill(
        self,
        key: str,
        value: Any,
        fill_token: str,
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
    ) -> None:
        """Stores a loaded value with the claim's token (ending the claim)."""
        await self._client.call(
            "PUT",
            self._path(key),
            query=_entry_query(ttl, as_list(tags), stale_ttl, fill_token),
            body=value,
            safe=True,
        )

    async def release_claim(self, key: str, fill_token: str) -> None:
        """Gives a claim up (the loader failed): the next caller may load."""
        r = await self._client.request("DELETE", self._path(key, "/claim"), query={"fill_token": fill_token}, safe=True)
        if r.status >= 400 and r.status != 404:
            raise r.error()

    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        ttl: Optional[float] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        stale_ttl: Optional[float] = None,
        soft_timeout: Optional[float] = None,
        wait: Optional[float] = None,
        claim_ttl: Optional[float] = None,
        fail_open: bool = True,
    ) -> T:
        """The value of ``key``, loaded by ``loader`` on a miss — by one caller per key across
        every caller and instance (the claim protocol); the others wait for its value, or
        are served the stale value inside the fail-safe window (``stale_ttl``).

        If the loader fails (or runs past ``soft_timeout`` seconds) and a stale value is
        there, the stale value is returned (a slow loader goes on in the background and
        stores its value when done). ``fail_open``: when redkit itself is unavailable, call
        the loader directly instead of failing.
        """
        try:
            answer = await self.claim(key, claim_ttl=claim_ttl, wait=wait)
        except errors.Unavailable:
            if not fail_open:
                raise
            log.warning("redkit cache %s: unavailable, loading %r without the cache", self.ns, key)
            return await loader()
        if answer.state == "fresh":
            return answer.value  # type: ignore[no-any-return]
        if answer.state == "busy":
            if answer.has_stale:
                return answer.stale  # type: ignore[no-any-return]
            # Another caller's load did not arrive within the wait: load here, and leave
            # storing to the claim's holder.
            return await loader()
        token = answer.fill_token
        assert token is not None
        task = asyncio.ensure_future(self._load_and_fill(key, loader, token, ttl, tags, stale_ttl))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if not answer.has_stale:
            return await task
        try:
            if soft_timeout is not None:
                return await asyncio.wait_for(asyncio.shield(task), soft_timeout)
            return await asyncio.shield(task)
        except asyncio.TimeoutError:
            log.info("redkit cache %s: loader of %r past its soft timeout; serving the stale value", self.ns, key)
            return answer.stale  # type: ignore[no-any-return]
        except Exception as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            log.warning("redkit cache %s: loader of %r failed (%r); serving the stale value", self.ns, key, e)
            return answer.stale  # type: ignore[no-any-return]

    async def _load_and_fill(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        token: str,
        ttl: Optional[float],
        tags: Optional[Sequence[str]],
        stale_ttl: Optional[float],
    ) -> T:
        try:
            value = await loader()
        except BaseException:
            self._spawn(self._release_quietly(key, token))
            raise
        try:
            await self.fill(key, value, token, ttl, tags=tags, stale_ttl=stale_ttl)
        except errors.Error as e:
            log.warning("redkit cache %s: could not store %r (%r)", self.ns, key, e)
        return value

    async def _release_quietly(self, key: str, token: str) -> None:
        try:
            await self.release_claim(key, token)
        except errors.Error as e:
            log.debug("redkit cache %s: releasing the claim on %r failed (%r)", self.ns, key, e)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- decorators -----------------------------------------------------------------------------
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
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """Get-or-set for an ``async def``: its result is cached per arguments.

        ``key``: a template of the arguments (``"user:{user_id}"``), a callable taking the
        same arguments, or None (the function's name and arguments). ``tags`` likewise
        (a list of templates, or a callable). ``stale_ttl`` (default: ``ttl``) keeps a value
        that long past its TTL, served when the loader fails or passes ``soft_timeout``, and
        at once to callers arriving while another loads; 0 turns that off. Loads happen
        once per key across callers and instances (see :meth:`get_or_set`).
        """
        fail_safe = ttl if stale_ttl is None else stale_ttl

        def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            binder = Binder(func)

            @functools.wraps(func)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                k = binder.key(key, args, kwargs)
                t = binder.tags(tags, args, kwargs)
                return await self.get_or_set(
                    k,
                    lambda: func(*args, **kwargs),
                    ttl,
                    tags=t,
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
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """For an ``async def`` that changes data: once it returns, the ``keys``, ``tags`` and
        ``patterns`` (templates of its arguments, or callables taking them) are removed."""
        keys, tags, patterns = as_list(keys), as_list(tags), as_list(patterns)

        def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            binder = Binder(func)

            @functools.wraps(func)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                result = await func(*args, **kwargs)
                calls: List[Awaitable[Any]] = [self.delete(k) for k in binder.keys(keys, args, kwargs)]
                calls += [self.invalidate_tag(t) for t in binder.keys(tags, args, kwargs)]
                calls += [self.invalidate_pattern(p) for p in binder.keys(patterns, args, kwargs)]
                await asyncio.gather(*calls)
                return result

            return wrapper

        return decorate

    def __repr__(self) -> str:
        return f"redkit.Cache({self.ns!r})"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
