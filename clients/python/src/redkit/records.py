"""Records: ``rk.collection(name)`` and ``rk.collections``.

A collection is a named set of JSON-object records with optional secondary indexes
(``equal`` and ``range``), a TTL, a size limit and redaction rules applied before anything
is stored. Records carry a version: a write with ``if_version`` happens only when the stored
version is that one (``0``: only when absent), else :class:`redkit.Conflict`.

Promises: ``get`` answers None for a record that is absent or expired, but raises
:class:`redkit.NotFound` when the collection itself is not defined (a mistyped name is not a
miss); plain writes (``put``, ``patch`` and ``delete`` without ``if_version``) are retried
where safe, conditional writes and ``incr`` are never repeated once sent (a repeat would
answer a spurious conflict, or count twice); ``scan`` pages a query to its end through the
server's cursor, including pages that come back short.
"""

from __future__ import annotations

from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

from ._http import Response, seg

if TYPE_CHECKING:
    from .client import AsyncClient

#: At most this many ids per ``POST /v1/records/{c}/get``; ``get_many`` splits longer lists.
GET_MANY_BATCH = 1000

IndexSpec = Union[Mapping[str, str], Iterable[Mapping[str, Any]]]
RangeSpec = Union["Range", Mapping[str, Any]]


class Redact:
    """Redaction rules for :meth:`Collection.define` (applied before a record is stored, so
    reads give back the redacted value). ``field`` ``"*"`` means every string field."""

    @staticmethod
    def hash(field: str) -> Dict[str, Any]:
        """The value is replaced by a keyed hash of it: equal values give equal hashes, so
        they still link, but the value cannot be read back. The server needs a redaction
        key for this rule."""
        return {"field": field, "action": "hash"}

    @staticmethod
    def mask(field: str, keep_last: Optional[int] = None) -> Dict[str, Any]:
        """The value becomes ``*`` but for its last ``keep_last`` characters (server
        default 4)."""
        rule: Dict[str, Any] = {"field": field, "action": "mask"}
        if keep_last is not None:
            rule["keep_last"] = keep_last
        return rule

    @staticmethod
    def drop(field: str) -> Dict[str, Any]:
        """The field is not stored."""
        return {"field": field, "action": "drop"}

    @staticmethod
    def scrub(field: str = "*", patterns: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """E-mail addresses, IP addresses and bearer tokens inside the field's strings (or
        those of ``patterns``: ``email``, ``ip``, ``bearer``) are replaced by ``[email]``,
        ``[ip]`` and ``Bearer [token]``."""
        rule: Dict[str, Any] = {"field": field, "action": "scrub"}
        if patterns is not None:
            rule["patterns"] = list(patterns)
        return rule


class Range:
    """The range condition of a query: ``field`` (with a ``range`` index) between ``min`` and
    ``max`` (either may be left open); results are ordered by it."""

    __slots__ = ("field", "max", "min")

    def __init__(self, field: str, min: Any = None, max: Any = None) -> None:  # noqa: A002 - the contract's words
        self.field = field
        self.min = min
        self.max = max

    def to_body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"field": self.field}
        if self.min is not None:
            body["min"] = self.min
        if self.max is not None:
            body["max"] = self.max
        return body

    def __repr__(self) -> str:
        return f"Range({self.field!r}, min={self.min!r}, max={self.max!r})"


class Index:
    """One secondary index of a collection: ``field``, ``kind`` (``equal`` or ``range``) and
    ``state`` (``ready``, or ``building`` while existing records are indexed)."""

    __slots__ = ("field", "kind", "state")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.field: str = raw["field"]
        self.kind: str = raw["kind"]
        self.state: str = raw.get("state", "ready")

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def __repr__(self) -> str:
        return f"Index({self.field!r}, {self.kind!r}, state={self.state!r})"


class CollectionInfo:
    """A collection's definition and size: ``name``, ``indexes``, ``ttl`` (seconds, None for
    no TTL), ``max_bytes`` (per record), ``redact`` (the rules) and ``count`` (records).
    ``raw`` is the server's JSON."""

    __slots__ = ("count", "indexes", "max_bytes", "name", "raw", "redact", "ttl")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.name: str = raw["name"]
        self.indexes: List[Index] = [Index(i) for i in raw.get("indexes") or []]
        ttl = int(raw.get("ttl_s") or 0)
        self.ttl: Optional[int] = ttl or None
        self.max_bytes: int = int(raw.get("max_bytes") or 0)
        self.redact: List[Dict[str, Any]] = [dict(r) for r in raw.get("redact") or []]
        self.count: int = int(raw.get("count") or 0)

    def index(self, field: str, kind: Optional[str] = None) -> Optional[Index]:
        """The index on ``field`` (of ``kind``), or None."""
        for i in self.indexes:
            if i.field == field and (kind is None or i.kind == kind):
                return i
        return None

    def __repr__(self) -> str:
        return f"CollectionInfo({self.name!r}, indexes={self.indexes!r}, count={self.count})"


class Record:
    """A stored record: ``id``, ``data`` (a dict, redacted as the collection says),
    ``version`` (for ``if_version``) and ``expires_at_ms`` (ms since the Unix epoch, None
    without a TTL). ``raw`` is the server's JSON."""

    __slots__ = ("data", "expires_at_ms", "id", "raw", "version")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.id: str = raw["id"]
        self.data: Dict[str, Any] = dict(raw.get("data") or {})
        self.version: int = int(raw["version"])
        expires = raw.get("expires_at_ms")
        self.expires_at_ms: Optional[int] = None if expires is None else int(expires)

    def __repr__(self) -> str:
        return f"Record({self.id!r}, version={self.version}, data={self.data!r})"


class Written:
    """A write's answer: the record's ``id`` and its new ``version``."""

    __slots__ = ("id", "version")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.id: str = raw["id"]
        self.version: int = int(raw["version"])

    def __repr__(self) -> str:
        return f"Written({self.id!r}, version={self.version})"


class Incremented:
    """An ``incr``'s answer: the field's new ``value`` and the record's new ``version``."""

    __slots__ = ("value", "version")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.value: int = int(raw["value"])
        self.version: int = int(raw["version"])

    def __repr__(self) -> str:
        return f"Incremented(value={self.value}, version={self.version})"


class RecordPage:
    """One page of a query: ``records`` and the ``cursor`` of the next page (None at the
    end). A page may be short, even empty, while ``cursor`` is not None: keep paging (or use
    :meth:`Collection.scan`)."""

    __slots__ = ("cursor", "records")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.records: List[Record] = [Record(r) for r in raw.get("records") or []]
        cursor = raw.get("cursor")
        self.cursor: Optional[str] = None if cursor is None else str(cursor)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"RecordPage({len(self.records)} records, cursor={self.cursor!r})"


def _index_list(indexes: IndexSpec) -> List[Dict[str, Any]]:
    if isinstance(indexes, Mapping):
        return [{"field": f, "kind": k} for f, k in indexes.items()]
    return [dict(i) for i in indexes]


def _range_body(spec: RangeSpec) -> Dict[str, Any]:
    if isinstance(spec, Range):
        return spec.to_body()
    return dict(spec)


def _query_body(
    where: Optional[Mapping[str, Any]],
    range_: Optional[RangeSpec],
    order: Optional[str],
    limit: Optional[int],
    cursor: Optional[str],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if where:
        body["where"] = dict(where)
    if range_ is not None:
        body["range"] = _range_body(range_)
    if order is not None:
        body["order"] = order
    if limit is not None:
        body["limit"] = limit
    if cursor is not None:
        body["cursor"] = cursor
    return body


def _undefined(r: Response) -> bool:
    """Whether a 404 says the collection is not defined (rather than the record absent)."""
    try:
        body = r.json()
    except ValueError:
        return False
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        # "…collection NAME is not defined"; an absent record's ends "…does not exist in NAME"
        # (a collection name has no spaces, so no record id can make it end the other way).
        message = str(body["error"].get("message", ""))
        return "collection " in message and message.endswith(" is not defined")
    return False


class Collection:
    """One collection: its definition (``define``, ``info``, ``drop``) and its records.

    Ids are 1 to 256 bytes (no control characters); ``data`` is a JSON object whose field
    names do not start with ``$``.
    """

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self.name = name
        self._def = "/v1/collections/" + seg(name)
        self._prefix = f"/v1/records/{seg(name)}"

    def _path(self, record_id: str, suffix: str = "") -> str:
        # "." and ".." are ids like any other, not dot segments a proxy would resolve.
        segment = record_id.replace(".", "%2E") if record_id in (".", "..") else seg(record_id)
        return f"{self._prefix}/{segment}{suffix}"

    # --- the definition -------------------------------------------------------------------------
    async def define(
        self,
        indexes: Optional[IndexSpec] = None,
        *,
        ttl: Optional[int] = None,
        max_bytes: Optional[int] = None,
        redact: Optional[Iterable[Mapping[str, Any]]] = None,
    ) -> CollectionInfo:
        """Defines (or redefines) the collection. ``indexes``: ``{"status": "equal",
        "score": "range"}`` or a list of ``{"field", "kind"}``; ``ttl``: seconds a record
        lives after its last write (server default 90 days; ``0``: no TTL); ``max_bytes``:
        the largest record (default 65536); ``redact``: rules (:class:`Redact`). An index
        added to a collection with records is ``building`` until they are indexed."""
        body: Dict[str, Any] = {}
        if indexes is not None:
            body["indexes"] = _index_list(indexes)
        if ttl is not None:
            body["ttl_s"] = int(ttl)
        if max_bytes is not None:
            body["max_bytes"] = int(max_bytes)
        if redact is not None:
            body["redact"] = [dict(r) for r in redact]
        return CollectionInfo(await self._client.call("PUT", self._def, body=body, safe=True))

    async def info(self) -> Optional[CollectionInfo]:
        """The definition and record count, or None when the collection is not defined."""
        r = await self._client.request("GET", self._def, safe=True)
        if r.status == 404:
            return None
        if r.status != 200:
            raise r.error()
        return CollectionInfo(r.json())

    async def drop(self) -> None:
        """Removes the definition and every record."""
        r = await self._client.request("DELETE", self._def, safe=True)
        if r.status >= 400 and r.status != 404:
            raise r.error()

    # --- records --------------------------------------------------------------------------------
    async def put(self, record_id: str, data: Mapping[str, Any], *, if_version: Optional[int] = None) -> Written:
        """Stores ``data`` as the record (replacing it). With ``if_version``, only when the
        stored version is that one (``0``: only when absent); else :class:`redkit.Conflict`."""
        body: Dict[str, Any] = {"data": dict(data)}
        if if_version is not None:
            body["if_version"] = if_version
        # A conditional write is not repeated: after a lost answer its repeat would conflict.
        return Written(await self._client.call("PUT", self._path(record_id), body=body, safe=if_version is None))

    async def create(self, record_id: str, data: Mapping[str, Any]) -> Written:
        """Stores the record only when it is absent (``if_version=0``); else Conflict."""
        return await self.put(record_id, data, if_version=0)

    async def get(self, record_id: str) -> Optional[Record]:
        """The record, or None when it is absent or expired (NotFound when the collection
        is not defined)."""
        r = await self._client.request("GET", self._path(record_id), safe=True)
        if r.status == 200:
            return Record(r.json())
        if r.status == 404 and not _undefined(r):
            return None
        raise r.error()

    async def patch(self, record_id: str, data: Mapping[str, Any], *, if_version: Optional[int] = None) -> Written:
        """Merges ``data`` into the record's top-level fields (a ``None`` value removes the
        field). :class:`redkit.NotFound` when the record is absent; ``if_version`` as in
        :meth:`put`."""
        body: Dict[str, Any] = {"data": dict(data)}
        if if_version is not None:
            body["if_version"] = if_version
        return Written(await self._client.call("PATCH", self._path(record_id), body=body, safe=if_version is None))

    async def delete(self, record_id: str) -> None:
        """Removes the record (nothing happens when it is absent)."""
        await self._client.call("DELETE", self._path(record_id), safe=True)

    async def incr(self, record_id: str, field: str, by: int = 1) -> Incremented:
        """Adds ``by`` to the integer ``field`` (creating the record as ``{field: by}`` when
        absent); the new value. :class:`redkit.Conflict` when the field holds something other
        than an integer. Never repeated once sent (it would count twice)."""
        body = {"field": field, "by": by}
        return Incremented(await self._client.call("POST", self._path(record_id, "/incr"), body=body, safe=False))

    async def get_many(self, record_ids: Iterable[str]) -> List[Optional[Record]]:
        """The records of ``record_ids`` in the same order, None for each absent one
        (1000 ids per call)."""
        ids = list(record_ids)
        out: List[Optional[Record]] = []
        for i in range(0, len(ids), GET_MANY_BATCH):
            answer = await self._client.call(
                "POST", self._prefix + "/get", body={"ids": ids[i : i + GET_MANY_BATCH]}, safe=True
            )
            out.extend(None if r is None else Record(r) for r in answer["records"])
        return out

    async def query(
        self,
        where: Optional[Mapping[str, Any]] = None,
        *,
        range: Optional[RangeSpec] = None,  # noqa: A002 - the contract's word
        order: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> RecordPage:
        """One page of records: those whose fields equal ``where``'s values (each field
        needs an ``equal`` index) and, with ``range`` (a :class:`Range` or ``{"field", "min",
        "max"}``; the field needs a ``range`` index), within it. Ordered by the range field
        when given, else by id; ``order`` ``"asc"`` (default) or ``"desc"``; ``limit`` 1 to
        1000 (default 100). Pass the page's ``cursor`` back for the next page."""
        body = _query_body(where, range, order, limit, cursor)
        return RecordPage(await self._client.call("POST", self._prefix + "/query", body=body, safe=True))

    async def scan(
        self,
        where: Optional[Mapping[str, Any]] = None,
        *,
        range: Optional[RangeSpec] = None,  # noqa: A002 - the contract's word
        order: Optional[str] = None,
        page: int = 100,
        cursor: Optional[str] = None,
    ) -> AsyncGenerator[Record, None]:
        """Every record of the query (see :meth:`query`), page by page through its cursor
        to the end: ``async for record in users.scan(where={"status": "active"})``."""
        while True:
            result = await self.query(where, range=range, order=order, limit=page, cursor=cursor)
            for record in result.records:
                yield record
            if result.cursor is None:
                return
            cursor = result.cursor

    def __repr__(self) -> str:
        return f"Collection({self.name!r})"


class Collections:
    """The collections a key may read (``rk.collections.list()``); one collection is
    ``rk.collection(name)``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> List[CollectionInfo]:
        """Every collection this API key may read, with its definition and count."""
        answer = await self._client.call("GET", "/v1/collections", safe=True)
        return [CollectionInfo(c) for c in answer["collections"]]


__all__ = [
    "Collection",
    "CollectionInfo",
    "Collections",
    "Incremented",
    "Index",
    "Range",
    "Record",
    "RecordPage",
    "Redact",
    "Written",
]
