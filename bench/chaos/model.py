"""What the soak remembers about its traffic, and how a read is judged against the writes
before it.

A *register* is one value with a single sequential writer: a session field (written with
strictly increasing integers), a cache key (a version number, or deleted) or a record id (the
sequence number of the put or patch it last took, or deleted). Every write is
kept with its outcome: acknowledged (2xx), refused (4xx: it did not happen) or unknown (5xx,
time-out: it may have happened — even later, e.g. a command Redis reads after SIGCONT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from client import Call, Outcome


class Verdict(Enum):
    OK = "ok"
    STALE = "stale"  # an older acknowledged value, though a newer write was acknowledged
    MISSING = "missing"  # nothing, though the last acknowledged write stored a value
    RESURRECTED = "resurrected"  # a value, though the last acknowledged write deleted it
    LATE = "late"  # a value of an unknown-outcome write made before the last acknowledged one
    REFUSED_APPLIED = "refused-applied"  # a value written only by a request answered 4xx
    PHANTOM = "phantom"  # a value no request ever carried


@dataclass
class Write:
    value: int | None  # None: a delete
    call: Call
    op: str = ""  # records: put, patch or delete
    # A record patch acknowledged in an outage after the other server was sent a delete of the
    # record in that outage: the delete may come first by stamp, and a patch of a deleted record
    # is dropped on replay, so its outcome counts as unknown (checks.condition_patches).
    conditional: bool = False

    @property
    def outcome(self) -> Outcome:
        if self.conditional and self.call.outcome is Outcome.ACK:
            return Outcome.UNKNOWN
        return self.call.outcome


@dataclass
class Register:
    name: str
    writes: list[Write] = field(default_factory=list)
    counter: int = 0

    def next_value(self) -> int:
        self.counter += 1
        return self.counter


@dataclass
class Judgement:
    verdict: Verdict
    basis: Write | None  # the last acknowledged write before the read


def last_ack(writes: Sequence[Write]) -> int:
    return max((i for i, w in enumerate(writes) if w.outcome is Outcome.ACK), default=-1)


def values_with(writes: Sequence[Write], outcome: Outcome) -> set[int | None]:
    return {w.value for w in writes if w.outcome is outcome}


def judge(writes: Sequence[Write], value: int | None) -> Judgement:
    """Judges a read that returned `value` after `writes` (all answered before it was sent)."""
    k = last_ack(writes)
    basis = writes[k] if k >= 0 else None
    expected = basis.value if basis is not None else None
    if value == expected or value in values_with(writes[k + 1:], Outcome.UNKNOWN):
        return Judgement(Verdict.OK, basis)
    if value is None:
        return Judgement(Verdict.MISSING, basis)
    before = writes[:max(k, 0)]
    if value in values_with(before, Outcome.ACK):
        return Judgement(Verdict.RESURRECTED if expected is None else Verdict.STALE, basis)
    if value in values_with(before, Outcome.UNKNOWN):
        return Judgement(Verdict.LATE, basis)
    if value in values_with(writes, Outcome.REFUSED):
        return Judgement(Verdict.REFUSED_APPLIED, basis)
    return Judgement(Verdict.PHANTOM, basis)


def judge_record(writes: Sequence[Write], value: int | None) -> Judgement:
    """`judge`, but a record gone where the last acknowledged write was a put or patch is late,
    not missing, when a delete of unknown outcome was sent before that write (it may land after
    it, as any unknown write may)."""
    j = judge(writes, value)
    k = last_ack(writes)
    if j.verdict is Verdict.MISSING and None in values_with(writes[:max(k, 0)], Outcome.UNKNOWN):
        return Judgement(Verdict.LATE, j.basis)
    return j


@dataclass
class RecordRegister(Register):
    """A record id with one sequential writer. A put stores `{"kind", "n", "v": s, "at": s}`, a
    patch `{"n", "at": s}`, s the write's sequence number; `carried` keeps what each write set."""

    carried: dict[int, dict[str, Any]] = field(default_factory=dict)

    def consistent(self, data: dict[str, Any]) -> bool:
        """Whether `data` is what some put followed by patches of this id would leave: the
        fields of the write named by `at`, on top of the put named by `v` (made before it)."""
        at, v = data.get("at"), data.get("v")
        if not isinstance(at, int) or not isinstance(v, int) or at not in self.carried or v not in self.carried:
            return False
        put = self.carried[v]
        if put.get("v") != v or v > at or any(data.get(k) != x for k, x in self.carried[at].items()):
            return False
        return set(data) == set(put) and data.get("kind") == put.get("kind")


@dataclass
class RegisterRead:
    kind: str  # "session", "cache" or "record"
    register: Register
    upto: int  # how many of the register's writes were answered before this read
    value: int | None
    call: Call
    final: bool = False
    data: dict[str, Any] | None = None  # records: what the read answered

    def judgement(self) -> Judgement:
        writes = self.register.writes[:self.upto]
        return judge_record(writes, self.value) if self.kind == "record" else judge(writes, self.value)


@dataclass
class Window:
    start: float
    end: float

    def holds(self, t: float) -> bool:
        return self.start <= t <= self.end

    def overlaps(self, start: float, end: float) -> bool:
        return start <= self.end and self.start <= end


def merge(windows: Sequence[Window]) -> list[Window]:
    merged: list[Window] = []
    for w in sorted(windows, key=lambda w: w.start):
        if merged and w.start <= merged[-1].end:
            merged[-1].end = max(merged[-1].end, w.end)
        else:
            merged.append(Window(w.start, w.end))
    return merged


def partitioned(episodes: Sequence[Window], acked_by: Call, read: Call) -> bool:
    """Whether `read` may not see `acked_by` because the two servers were cut off from each
    other: the read went to the other server, and the write was acknowledged and the read
    sent within one outage episode (from the fault until both servers are back on Redis
    with an empty journal)."""
    if acked_by.inst == read.inst:
        return False
    return any(e.holds(acked_by.end) and e.holds(read.start) for e in episodes)


@dataclass
class Chain:
    """A logical session: its id changes on rotation, its fields carry over."""

    user: str
    ids: list[str]
    fields: dict[str, Register]
    served: dict[str, set[int]] = field(default_factory=dict)  # id -> servers that answered 2xx for it
    state: str = "live"  # live, dead (acknowledged delete or revoke) or uncertain

    @property
    def current(self) -> str:
        return self.ids[-1]


@dataclass
class DeadId:
    """A session id that an acknowledged delete, rotation or revocation ended."""

    sid: str
    reason: str
    ended_by: Call
    answer: str = ""  # what the ending request answered, e.g. {"deleted": false}


@dataclass
class DeadRead:
    dead: DeadId
    call: Call
    final: bool = False

    @property
    def revived(self) -> bool:
        return self.call.status == 200


@dataclass
class Unreadable:
    """A live session answered 404 (GET or PATCH)."""

    call: Call
    served_here: bool  # this server had answered 2xx for that id before


@dataclass
class Grant:
    name: str
    fence: int
    acquire: Call
    ttl_s: float
    expiry: float  # the lease end the server stated, on the monotonic clock
    release_sent: float | None = None

    @property
    def start(self) -> float:
        return self.acquire.end

    @property
    def end(self) -> float:
        """The earliest the hold can have ended: the release was sent, or the lease ran out
        (it began after the acquire was sent)."""
        ends = [self.acquire.start + self.ttl_s, self.expiry]
        if self.release_sent is not None:
            ends.append(self.release_sent)
        return min(ends)


@dataclass
class Enqueue:
    job_id: str
    call: Call
    delay_s: float = 0.0  # the job's delay (`delay_ms`): it may run no earlier than that after its enqueue


@dataclass
class Processing:
    job_id: str
    fetch: Call
    lease_s: float
    ack: Call | None = None
    ack_outcome: str | None = None

    @property
    def lease(self) -> Window:
        return Window(self.fetch.start, self.fetch.end + self.lease_s)


@dataclass
class CounterRecord:
    """A record only ever incremented (field `c`, by 1), by several clients on both servers."""

    rid: str
    incrs: list[Call] = field(default_factory=list)
    final: dict[int, int | None] = field(default_factory=dict)  # server -> `c` at the end (None: absent)

    @property
    def acked(self) -> int:
        return sum(1 for c in self.incrs if c.outcome is Outcome.ACK)

    @property
    def unknown(self) -> int:
        return sum(1 for c in self.incrs if c.outcome is Outcome.UNKNOWN)


@dataclass
class RecordQuery:
    """A query paged to its end after the traffic (`spec`: its where/range; {} for the scan)."""

    inst: int
    label: str
    spec: dict[str, Any]
    ids: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # id -> data, as the pages answered
    complete: bool = False
    calls: list[Call] = field(default_factory=list)


@dataclass
class Observations:
    chains: list[Chain] = field(default_factory=list)
    dead: list[DeadId] = field(default_factory=list)
    dead_reads: list[DeadRead] = field(default_factory=list)
    reads: list[RegisterRead] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    cache: list[Register] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    enqueues: list[Enqueue] = field(default_factory=list)
    processings: list[Processing] = field(default_factory=list)
    job_states: dict[str, str] = field(default_factory=dict)  # unprocessed job -> state at the end
    unanswered_final: int = 0  # final reads that got neither 200 nor 404
    records: list[RecordRegister] = field(default_factory=list)
    counters: dict[str, CounterRecord] = field(default_factory=dict)
    record_present: dict[int, set[str]] = field(default_factory=dict)  # server -> ids its final get found
    record_get_failed: set[int] = field(default_factory=set)  # servers where a final get batch went unanswered
    record_scans: dict[int, RecordQuery] = field(default_factory=dict)  # server -> the full scan
    record_queries: list[RecordQuery] = field(default_factory=list)  # by an index, both servers
