"""Capped lists: ``rk.lists``.

A capped list keeps the newest items of a stream (recent activity, the last N events): a
push adds items and trims the list to its cap in one atomic step, so it never grows past it.

Promises: a push is never repeated once sent (a repeat would add its items twice); reads
give the newest item first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence

from ._http import seg

if TYPE_CHECKING:
    from .client import AsyncClient


class ListPage:
    """A slice of a capped list, newest first: ``items``, and the list's whole ``length``."""

    __slots__ = ("items", "length")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.items: List[Any] = list(raw.get("items") or [])
        self.length: int = int(raw.get("length") or 0)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"ListPage({self.items!r}, length={self.length})"


class Lists:
    """Capped lists by name (1 to 64 of ``A-Za-z0-9_.-``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def push(self, name: str, items: Sequence[Any], *, cap: int, ttl: Optional[int] = None) -> int:
        """Adds ``items`` (1 to 1000, any JSON) to the front of the list, then trims it to
        its newest ``cap`` items (1 to 100000), atomically; ``ttl`` (seconds) is refreshed by
        every push. The list's length after it. Never repeated once sent."""
        if isinstance(items, (str, bytes)):
            raise TypeError("redkit: push takes a sequence of items; wrap a single item in a list")
        body: Dict[str, Any] = {"items": list(items), "cap": cap}
        if ttl is not None:
            body["ttl_s"] = int(ttl)
        answer = await self._client.call("POST", f"/v1/lists/{seg(name)}/push", body=body, safe=False)
        return int(answer["length"])

    async def get(self, name: str, *, offset: int = 0, limit: int = 100) -> ListPage:
        """Up to ``limit`` items from ``offset`` on, newest first, and the list's length."""
        answer = await self._client.call(
            "GET", "/v1/lists/" + seg(name), query={"offset": offset, "limit": limit}, safe=True
        )
        return ListPage(answer)

    async def delete(self, name: str) -> None:
        """Removes the list (nothing happens when there is none)."""
        await self._client.call("DELETE", "/v1/lists/" + seg(name), safe=True)
