"""Rate limits: ``rk.ratelimit``.

Promises: a check is a :class:`Decision` (a refusal too, with ``retry_after`` in seconds and
the headers to pass on), never sent twice (a repeat would count twice); ``hit`` and the
``limit`` decorator raise :class:`redkit.RateLimited` instead; policies defined here are
stored where every server sees them.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar, Union

from . import errors
from ._http import seg
from ._keys import Binder

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    from .client import AsyncClient

    P = ParamSpec("P")

T = TypeVar("T")

#: The headers a decision passes on to an HTTP response.
HEADERS = ("ratelimit", "ratelimit-policy", "retry-after")


class Decision:
    """The answer to one check. ``retry_after`` and ``reset_after`` are seconds (float);
    ``headers`` holds ``RateLimit``, ``RateLimit-Policy`` and (when refused) ``Retry-After``
    as the server sent them, to pass on to your own response."""

    __slots__ = (
        "allowed",
        "basis",
        "headers",
        "limit",
        "policy",
        "raw",
        "remaining",
        "reset_after",
        "retry_after",
        "shadow_denied",
        "window",
    )

    def __init__(self, raw: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        self.raw = dict(raw)
        self.allowed: bool = bool(raw["allowed"])
        self.policy: str = raw.get("policy", "")
        self.limit: int = int(raw.get("limit", 0))
        self.window: int = int(raw.get("window_s", 0))
        self.remaining: int = int(raw.get("remaining", 0))
        self.reset_after: float = float(raw.get("reset_after_ms") or 0) / 1000.0
        retry = raw.get("retry_after_ms")
        self.retry_after: Optional[float] = None if retry is None else float(retry) / 1000.0
        self.shadow_denied: bool = bool(raw.get("shadow_denied", False))
        self.basis: str = raw.get("basis", "limiter")
        self.headers: Dict[str, str] = {k: v for k, v in headers.items() if k in HEADERS}

    def __bool__(self) -> bool:
        return self.allowed

    def raise_for_refusal(self) -> None:
        """Raises :class:`redkit.RateLimited` unless allowed."""
        if not self.allowed:
            raise errors.RateLimited(
                f"rate limited by policy {self.policy!r}; retry after {self.retry_after or 0:.3f} s",
                retry_after=self.retry_after,
                decision=self,
            )

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, policy={self.policy!r}, remaining={self.remaining}, "
            f"retry_after={self.retry_after})"
        )


class RateLimits:
    """Checks against named policies, and the policies themselves (shared by every server)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def check(self, policy: str, key: str, cost: int = 1) -> Decision:
        """Counts ``cost`` units for ``key`` under ``policy``; the decision (refusals are a
        decision with ``allowed`` False, not an exception). Never retried once sent: a
        repeat would count twice."""
        body: Dict[str, Any] = {"key": key}
        if cost != 1:
            body["cost"] = cost
        r = await self._client.request("POST", f"/v1/ratelimit/{seg(policy)}/check", body=body, safe=False)
        if r.status in (200, 429):
            return Decision(r.json(), r.headers)
        raise r.error()

    async def hit(self, policy: str, key: str, cost: int = 1) -> Decision:
        """Like :meth:`check`, but raises :class:`redkit.RateLimited` when refused."""
        d = await self.check(policy, key, cost)
        d.raise_for_refusal()
        return d

    async def define(
        self,
        name: str,
        limit: int,
        period: float,
        *,
        algorithm: Optional[str] = None,
        burst: Optional[int] = None,
        shadow: Optional[bool] = None,
        allow: Optional[Sequence[str]] = None,
        deny: Optional[Sequence[str]] = None,
        fallback_share: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Defines (or replaces) a policy: ``limit`` per ``period`` seconds. Stored where every
        server sees it within a second."""
        body: Dict[str, Any] = {"limit": limit, "period_ms": int(period * 1000)}
        for k, v in (
            ("algorithm", algorithm),
            ("burst", burst),
            ("shadow", shadow),
            ("allow", list(allow) if allow is not None else None),
            ("deny", list(deny) if deny is not None else None),
            ("fallback_share", fallback_share),
        ):
            if v is not None:
                body[k] = v
        result: Dict[str, Any] = await self._client.call(
            "PUT", "/v1/ratelimit/policies/" + seg(name), body=body, safe=True
        )
        return result

    async def policy(self, name: str) -> Optional[Dict[str, Any]]:
        """The policy (``{name, policy, stats}``), or None."""
        r = await self._client.request("GET", "/v1/ratelimit/policies/" + seg(name), safe=True)
        if r.status == 404:
            return None
        if r.status != 200:
            raise r.error()
        result: Dict[str, Any] = r.json()
        return result

    async def policies(self) -> List[Dict[str, Any]]:
        result: List[Dict[str, Any]] = await self._client.call("GET", "/v1/ratelimit/policies", safe=True)
        return result

    async def delete_policy(self, name: str) -> bool:
        r = await self._client.request("DELETE", "/v1/ratelimit/policies/" + seg(name), safe=True)
        if r.status == 404:
            return False
        if r.status >= 400:
            raise r.error()
        return True

    def limit(
        self,
        policy: str,
        key: Union[str, Callable[..., Union[str, Awaitable[str]]]],
        *,
        cost: int = 1,
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """Decorates an ``async def``: each call is checked against ``policy`` first, keyed
        by ``key`` (a template of the arguments like ``"user:{user_id}"``, or a callable
        taking them, sync or async); a refusal raises :class:`redkit.RateLimited`."""

        def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            binder = Binder(func)

            @functools.wraps(func)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                if callable(key):
                    k = key(*args, **kwargs)
                    if inspect.isawaitable(k):
                        k = await k
                else:
                    k = key.format(**binder.arguments(args, kwargs))
                await self.hit(policy, str(k), cost)
                return await func(*args, **kwargs)

            return wrapper

        return decorate
