"""Time-bucketed counters: ``rk.counters``.

A counter counts into minute, hour and day buckets, in total and per label set (``{"route":
"/login", "status": "200"}``), for analytics such as requests per minute. Reads give every
bucket of a span, the empty ones as 0, so a series can be charted as it comes.

Promises: an increment is never repeated once sent (it would count twice); every increment
also counts in the counter's total; a series has one bucket per minute, hour or day from its
start to its end, zeros included. Retention: minute buckets 2 days, hours 90 days, days
3 years.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Union

from ._http import seg

if TYPE_CHECKING:
    from .client import AsyncClient

#: A point in time: a datetime, or Unix seconds.
When = Union[float, int, _dt.datetime]

GRANULARITIES = ("minute", "hour", "day")


def _ms(when: When) -> int:
    ts = when.timestamp() if isinstance(when, _dt.datetime) else float(when)
    return int(ts * 1000)


class CounterValues:
    """The values of the incremented label set's current buckets after an increment."""

    __slots__ = ("day", "hour", "minute")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.minute: int = int(raw["minute"])
        self.hour: int = int(raw["hour"])
        self.day: int = int(raw["day"])

    def __repr__(self) -> str:
        return f"CounterValues(minute={self.minute}, hour={self.hour}, day={self.day})"


class Bucket:
    """One bucket of a series: ``start_ms`` (ms since the Unix epoch) and its ``value``."""

    __slots__ = ("start_ms", "value")

    def __init__(self, start_ms: int, value: int) -> None:
        self.start_ms = start_ms
        self.value = value

    @property
    def start(self) -> _dt.datetime:
        """The bucket's start as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.start_ms / 1000, tz=_dt.timezone.utc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bucket) and (self.start_ms, self.value) == (other.start_ms, other.value)

    def __hash__(self) -> int:
        return hash((self.start_ms, self.value))

    def __repr__(self) -> str:
        return f"Bucket({self.start_ms}, {self.value})"


class Series:
    """A counter's buckets of one ``granularity`` over a span, oldest first, zeros included."""

    __slots__ = ("buckets", "granularity")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.granularity: str = raw["granularity"]
        self.buckets: List[Bucket] = [Bucket(int(b["start_ms"]), int(b["value"])) for b in raw.get("buckets") or []]

    @property
    def values(self) -> List[int]:
        return [b.value for b in self.buckets]

    @property
    def total(self) -> int:
        return sum(b.value for b in self.buckets)

    def __iter__(self) -> Iterator[Bucket]:
        return iter(self.buckets)

    def __len__(self) -> int:
        return len(self.buckets)

    def __repr__(self) -> str:
        return f"Series({self.granularity!r}, {self.values!r})"


class Counters:
    """Counters by name (1 to 64 of ``A-Za-z0-9_.-``). Labels: at most 8 per set, keys and
    values 1 to 64 bytes, at most 100 label sets per counter."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def incr(
        self,
        name: str,
        by: int = 1,
        *,
        labels: Optional[Mapping[str, str]] = None,
        at: Optional[When] = None,
    ) -> CounterValues:
        """Counts ``by`` for ``labels`` (and in the total) at ``at`` (a datetime or Unix
        seconds; default now). The label set's minute, hour and day values after it. Never
        repeated once sent."""
        body: Dict[str, Any] = {"by": by}
        if labels:
            body["labels"] = dict(labels)
        if at is not None:
            body["at_ms"] = _ms(at)
        return CounterValues(await self._client.call("POST", f"/v1/counters/{seg(name)}/incr", body=body, safe=False))

    async def range(
        self,
        name: str,
        granularity: str = "minute",
        *,
        start: Optional[When] = None,
        end: Optional[When] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Series:
        """Every ``granularity`` (``minute``, ``hour``, ``day``) bucket whose start lies from
        ``start`` to ``end`` (inclusive; datetimes or Unix seconds; default: the last 60
        buckets up to now), missing ones as 0, at most 1500. Of the total, or of one label
        set with ``labels``."""
        query: Dict[str, Any] = {"granularity": granularity}
        if start is not None:
            query["from_ms"] = _ms(start)
        if end is not None:
            query["to_ms"] = _ms(end)
        if labels:
            query["labels"] = json.dumps(dict(labels), separators=(",", ":"), ensure_ascii=False)
        return Series(await self._client.call("GET", "/v1/counters/" + seg(name), query=query, safe=True))

    async def labels(self, name: str) -> List[Dict[str, str]]:
        """The label sets this counter has counted for."""
        answer = await self._client.call("GET", f"/v1/counters/{seg(name)}/labels", safe=True)
        return [dict(s) for s in answer["labels"]]
