"""Server-Sent Events over the client's own HTTP/1.1: one connection per stream, outside the
pool (a stream holds its connection for as long as it is followed).

Promises: :func:`open_stream` connects to the first configured server that answers (the
others in turn, as the transport orders them), sends one ``GET`` with ``Accept:
text/event-stream`` and the given headers, and returns the answer's status and headers;
an ``SseEvent`` iterator then parses the body as the SSE specification says (``event``,
``data`` lines joined by ``\\n``, ``id``, ``retry``; comments — the server's keep-alives —
skipped). Reading is paused while the caller lags far behind, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncIterator, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote, urlencode

import httptools

from . import errors

if TYPE_CHECKING:
    from ._http import QueryValue, Transport, _Endpoint

# Chunks waiting for the caller before the socket is paused (and resumed at a quarter).
_HIGH_WATER = 256


class SseEvent:
    """One event: its type (``message`` unless named), data, and id (None when it had none)."""

    __slots__ = ("data", "event", "id")

    def __init__(self, event: str, data: str, id: Optional[str]) -> None:  # noqa: A002 - the SSE field
        self.event = event
        self.data = data
        self.id = id

    def __repr__(self) -> str:
        return f"SseEvent({self.event!r}, id={self.id!r}, data={self.data[:80]!r})"


class _End:
    """The body ended (the server closed the stream)."""


_END = _End()
Chunk = Union[bytes, _End, BaseException]


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: Optional[asyncio.Transport] = None
        self.head: asyncio.Future[Tuple[int, Dict[str, str]]] = loop.create_future()
        self.chunks: asyncio.Queue[Chunk] = asyncio.Queue()
        self._headers: Dict[str, str] = {}
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as e:
            self._fail(errors.Error(f"redkit: malformed HTTP answer ({e})", code="protocol_error"))
            self.close()
            return
        if not self._paused and self.chunks.qsize() > _HIGH_WATER and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._fail(ConnectionResetError(str(exc) if exc else "the stream's connection closed"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if not self.head.done():
            self.head.set_result((self._parser.get_status_code(), self._headers))

    def on_body(self, body: bytes) -> None:
        self.chunks.put_nowait(body)

    def on_message_complete(self) -> None:
        self.chunks.put_nowait(_END)

    def _fail(self, exc: BaseException) -> None:
        if not self.head.done():
            self.head.set_exception(exc)
        self.chunks.put_nowait(exc)

    async def next_chunk(self) -> Chunk:
        chunk = await self.chunks.get()
        if self._paused and self.chunks.qsize() <= _HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Stream:
    """An open event stream: ``status``, ``headers``; iterate :meth:`events`; :meth:`close`."""

    def __init__(self, protocol: _StreamProtocol, status: int, headers: Dict[str, str], url: str) -> None:
        self._protocol = protocol
        self.status = status
        self.headers = headers
        self.url = url

    async def body(self) -> bytes:
        """The whole body (for an error answer)."""
        parts: List[bytes] = []
        while True:
            chunk = await self._protocol.next_chunk()
            if isinstance(chunk, bytes):
                parts.append(chunk)
            else:
                return b"".join(parts)

    async def events(self) -> AsyncIterator[SseEvent]:
        """The events until the stream ends (returns) or its connection breaks (raises
        ``ConnectionError``)."""
        buffer = ""
        event = ""
        data: List[str] = []
        last_id: Optional[str] = None
        has_id = False
        pending = b""
        while True:
            chunk = await self._protocol.next_chunk()
            if isinstance(chunk, _End):
                return
            if isinstance(chunk, BaseException):
                raise chunk
            pending += chunk
            try:
                text = pending.decode("utf-8")
                pending = b""
            except UnicodeDecodeError:
                continue  # a character split across chunks: wait for the rest
            buffer += text.replace("\r\n", "\n").replace("\r", "\n")
            *lines, buffer = buffer.split("\n")
            for line in lines:
                if line == "":
                    if data:
                        yield SseEvent(event or "message", "\n".join(data), last_id if has_id else None)
                    event, data, has_id = "", [], False
                    continue
                if line.startswith(":"):
                    continue  # a comment: the server's keep-alive
                name, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id" and "\0" not in value:
                    last_id, has_id = value, True

    def close(self) -> None:
        self._protocol.close()


async def open_stream(
    transport: Transport,
    path: str,
    *,
    query: Optional[Mapping[str, QueryValue]] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Stream:
    """Connects to the first server that answers and sends the ``GET``; raises
    :class:`redkit.ConnectError` when none does."""
    loop = asyncio.get_running_loop()
    order = transport._order(loop.time())
    last: Optional[BaseException] = None
    for ep in order:
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _StreamProtocol(loop), ep.host, ep.port, ssl=ep.ssl),
                transport.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as e:
            transport._down(ep, loop.time())
            last = e
            continue
        assert protocol.transport is not None
        protocol.transport.write(_request(transport, ep, path, query, headers))
        try:
            status, answer_headers = await asyncio.wait_for(asyncio.shield(protocol.head), transport.timeout)
        except BaseException:
            protocol.close()
            raise
        return Stream(protocol, status, answer_headers, ep.url)
    raise errors.ConnectError(
        f"redkit: no server reachable ({', '.join(e.url for e in order)}): {last}", status=None
    ) from None


def _request(
    transport: Transport,
    ep: _Endpoint,
    path: str,
    query: Optional[Mapping[str, QueryValue]],
    headers: Optional[Mapping[str, str]],
) -> bytes:
    target = ep.base + path
    items = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
    if items:
        target += "?" + urlencode(items, quote_via=quote)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items() if "\r" not in v and "\n" not in v)
    return (
        f"GET {target} HTTP/1.1\r\nHost: {ep.host_header}\r\n{transport._auth}"
        f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n{extra}\r\n"
    ).encode()
