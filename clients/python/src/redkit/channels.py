"""Pub/sub with history and recovery: ``rk.channels``.

Promises: :meth:`Channels.publish` is safe to retry (an idempotency key is made when none is
given, and the server answers a repeat with the first publication's position);
:meth:`Channels.subscribe` follows a channel over Server-Sent Events and never drops a
publication silently — it reconnects by itself (to the next server when one is down) and
resumes after the last event it saw, and whenever the server cannot fill the gap it yields a
:class:`Gap` before the next message, so the caller knows to reload what it shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional, Union

from . import errors
from ._http import seg
from ._sse import open_stream

if TYPE_CHECKING:
    from .client import AsyncClient

log = logging.getLogger("redkit")


class Position:
    """A place in a channel's stream: ``offset`` within ``epoch`` (a new epoch means the
    stream was recreated and offsets restarted). ``id`` is its event id, ``EPOCH:OFFSET``."""

    __slots__ = ("epoch", "offset")

    def __init__(self, epoch: str, offset: int) -> None:
        self.epoch = epoch
        self.offset = offset

    @property
    def id(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, event_id: str) -> Position:
        """From an event id (``EPOCH:OFFSET``, split at the last colon)."""
        epoch, sep, offset = event_id.rpartition(":")
        if not sep or not offset.isdigit():
            raise ValueError(f"redkit: {event_id!r} is not an event id EPOCH:OFFSET")
        return cls(epoch, int(offset))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Position) and (self.epoch, self.offset) == (other.epoch, other.offset)

    def __hash__(self) -> int:
        return hash((self.epoch, self.offset))

    def __repr__(self) -> str:
        return f"Position(epoch={self.epoch!r}, offset={self.offset})"


class Publication:
    """One publication of a history page."""

    __slots__ = ("data", "offset")

    def __init__(self, offset: int, data: Any) -> None:
        self.offset = offset
        self.data = data

    def __repr__(self) -> str:
        return f"Publication({self.offset}, {self.data!r})"


class History:
    """A page of history (in the order asked for) and the stream's position now."""

    __slots__ = ("epoch", "offset", "oldest_offset", "publications")

    def __init__(self, raw: Dict[str, Any]) -> None:
        self.publications = [Publication(int(p["offset"]), p.get("data")) for p in raw["publications"]]
        self.offset = int(raw["offset"])
        self.epoch = str(raw["epoch"])
        self.oldest_offset = int(raw.get("oldest_offset", 0))

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)


class Message:
    """A publication received live: ``data`` (its JSON), ``offset``, ``epoch``, ``id``."""

    __slots__ = ("channel", "data", "epoch", "offset")

    def __init__(self, channel: str, data: Any, position: Position) -> None:
        self.channel = channel
        self.data = data
        self.epoch = position.epoch
        self.offset = position.offset

    @property
    def id(self) -> str:
        return f"{self.epoch}:{self.offset}"

    def __repr__(self) -> str:
        return f"Message({self.channel!r}, offset={self.offset}, data={self.data!r})"


class Gap:
    """Publications were missed that the history cannot give back (the subscription resumed
    with ``recovered: false``): reload what you show. ``epoch``/``offset``: where the stream
    continues from."""

    __slots__ = ("channel", "epoch", "offset")

    def __init__(self, channel: str, position: Position) -> None:
        self.channel = channel
        self.epoch = position.epoch
        self.offset = position.offset

    def __repr__(self) -> str:
        return f"Gap({self.channel!r}, epoch={self.epoch!r}, offset={self.offset})"


class Subscription:
    """``async for event in rk.channels.subscribe(ch)``: :class:`Message` items, and a
    :class:`Gap` whenever publications were lost. Reconnects by itself; ``position`` is the
    last event seen (where a reconnect resumes); ``reconnects`` counts them. End it with
    ``await sub.aclose()`` (or by leaving the ``async for``/``async with``)."""

    def __init__(
        self,
        client: AsyncClient,
        channel: str,
        since: Optional[Position],
        *,
        max_backoff: float = 5.0,
    ) -> None:
        self._client = client
        self.channel = channel
        self.position = since
        self.reconnects = 0
        self.max_backoff = max_backoff
        self._iter: Optional[AsyncIterator[Union[Message, Gap]]] = None
        self._closed = False
        self._stream: Any = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Union[Message, Gap]:
        if self._iter is None:
            self._iter = self._run()
        return await self._iter.__anext__()

    async def _run(self) -> AsyncIterator[Union[Message, Gap]]:
        path = f"/v1/channels/{seg(self.channel)}/events"
        backoff = 0.0
        transport = self._client._transport
        while not self._closed:
            headers = {"Last-Event-ID": self.position.id} if self.position is not None else {}
            try:
                stream = await open_stream(transport, path, headers=headers)
            except errors.ConnectError as e:
                backoff = await self._pause(backoff, e)
                continue
            self._stream = stream
            try:
                if stream.status != 200:
                    body = await stream.body()
                    try:
                        decoded = json.loads(body) if body else None
                    except ValueError:
                        decoded = None
                    error = errors.from_response(stream.status, decoded, stream.headers)
                    if not isinstance(error, errors.Unavailable):
                        raise error  # bad input, unknown channel, no access: reconnecting cannot help
                    backoff = await self._pause(backoff, error)
                    continue
                async for event in stream.events():
                    backoff = 0.0
                    if event.id is not None:
                        self.position = Position.parse(event.id)
                    if event.event == "subscribed":
                        info = json.loads(event.data)
                        self.position = Position(str(info["epoch"]), int(info["offset"]))
                        if not info.get("recovered", True):
                            yield Gap(self.channel, self.position)
                    elif event.event == "message":
                        assert self.position is not None
                        yield Message(self.channel, json.loads(event.data), self.position)
                    elif event.event == "error":
                        log.warning("redkit channel %s: the server reports %s", self.channel, event.data)
            except (ConnectionError, OSError, errors.Timeout) as e:
                if self._closed:
                    return
                backoff = await self._pause(backoff, e)
                continue
            finally:
                stream.close()
                self._stream = None
            if not self._closed:  # the server ended the stream (shutting down): follow elsewhere
                self.reconnects += 1

    async def _pause(self, backoff: float, why: BaseException) -> float:
        self.reconnects += 1
        backoff = min(self.max_backoff, max(0.05, backoff * 2))
        log.info("redkit channel %s: reconnecting in %.2f s (%r)", self.channel, backoff, why)
        await asyncio.sleep(backoff * (0.5 + random.random() / 2))
        return backoff

    async def aclose(self) -> None:
        """Ends the subscription (its connection closes)."""
        self._closed = True
        if self._stream is not None:
            self._stream.close()
        it = self._iter
        if it is not None and not getattr(it, "ag_running", False):
            # (While another task is inside it, closing the stream above ends it there.)
            await it.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Channels:
    """Publish, read history, subscribe. Channel names are 1 to 256 bytes."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def publish(self, channel: str, data: Any, idempotency_key: Optional[str] = None) -> Position:
        """Publishes ``data`` (any JSON, at most 64 KiB) to every subscriber on every server;
        its position. With the same ``idempotency_key`` within 2 minutes the server answers
        the first publication's position instead of publishing again (one is made when not
        given, so the client's own retries never publish twice)."""
        body = {"data": data, "idempotency_key": idempotency_key or uuid.uuid4().hex}
        answer = await self._client.call("POST", f"/v1/channels/{seg(channel)}/publish", body=body, safe=True)
        return Position(str(answer["epoch"]), int(answer["offset"]))

    async def history(
        self,
        channel: str,
        limit: int = 100,
        since: Union[Position, str, None] = None,
        reverse: bool = False,
    ) -> History:
        """Up to ``limit`` (0 to 1000) publications: the oldest first after ``since`` (a
        :class:`Position` or event id), or the newest first with ``reverse``. ``since`` from
        another epoch raises :class:`redkit.Conflict` (what came after it is unknown)."""
        pos = Position.parse(since) if isinstance(since, str) else since
        query: Dict[str, Any] = {"limit": limit}
        if pos is not None:
            query["since_epoch"] = pos.epoch
            query["since_offset"] = pos.offset
        if reverse:
            query["reverse"] = True
        return History(await self._client.call("GET", f"/v1/channels/{seg(channel)}/history", query=query, safe=True))

    def subscribe(
        self, channel: str, since: Union[Position, str, None] = None, *, max_backoff: float = 5.0
    ) -> Subscription:
        """Follows ``channel``: live publications, after ``since`` (a :class:`Position` or
        event id: the missed ones first, or a :class:`Gap` when the history cannot give them
        back) or from now on."""
        pos = Position.parse(since) if isinstance(since, str) else since
        return Subscription(self._client, channel, pos, max_backoff=max_backoff)

    async def list(self) -> List[Dict[str, Any]]:
        """The channels this server knows of (subscribers here, publish counts)."""
        answer = await self._client.call("GET", "/v1/channels", safe=True)
        result: List[Dict[str, Any]] = answer["channels"]
        return result
