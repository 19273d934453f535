"""What the soak remembers about its traffic, and how a read is judged against the writes
before it.

A *register* is one value with a single sequential writer: a session field (written with
strictly increasing integers) or a cache key (a version number, or deleted). Every write is
kept with its outcome: acknowledged (2xx), refused (4xx: it did not happen) or unknown (5xx,
time-out: it may have happened — even later, e.g. a command Redis reads after SIGCONT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

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

    @property
    def outcome(self) -> Outcome:
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


@dataclass
class RegisterRead:
    kind: str  # "session" or "cache"
    register: Register
    upto: int  # how many of the register's writes were answered before this read
    value: int | None
    call: Call
    final: bool = False

    def judgement(self) -> Judgement:
        return judge(self.register.writes[:self.upto], self.value)


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
