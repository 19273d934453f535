"""The figures: what the design promises never happens (required: must be 0), and what the
soak reports without judging (availability, duplicates explained by a fault, latency).
Each required figure is the length of a list of findings, which `findings_text` spells out."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from client import Call, Outcome
from faults import Fault
from model import (
    CounterRecord,
    DeadRead,
    Grant,
    Observations,
    Processing,
    RecordQuery,
    RecordRegister,
    RegisterRead,
    Verdict,
    Window,
    merge,
    partitioned,
)


@dataclass
class Figure:
    name: str
    value: int
    meaning: str
    required: bool


@dataclass
class Timeline:
    """When things were broken: faults (until Redis answered) and outage episodes (until
    both servers were back on Redis)."""

    faults: list[Window]
    episodes: list[Window]
    recoveries: list[Window]  # the 5 s after each fault's end


def timeline(faults: Sequence[Fault], run_end: float) -> Timeline:
    windows = [Window(f.start, f.end) for f in faults]
    episodes = [Window(f.start, max((b if b is not None else run_end) for b in f.back) if f.back else run_end)
                for f in faults]
    return Timeline(windows, merge(episodes), [Window(f.end, f.end + 5.0) for f in faults])


def explained_by_partition(read: RegisterRead, episodes: Sequence[Window]) -> bool:
    basis = read.judgement().basis
    return not read.final and basis is not None and partitioned(episodes, basis.call, read.call)


def select(reads: Iterable[RegisterRead], kind: str | None, wanted: set[Verdict], *, final: bool | None = None,
           episodes: Sequence[Window] = (), explained: bool | None = None) -> list[RegisterRead]:
    """Reads judged one of `wanted`; with `explained`, only those a partition does (or does not) explain."""
    out = []
    for r in reads:
        if (kind is not None and r.kind != kind) or (final is not None and r.final != final):
            continue
        if r.judgement().verdict not in wanted:
            continue
        if explained is not None and explained_by_partition(r, episodes) != explained:
            continue
        out.append(r)
    return out


def revived(obs: Observations, episodes: Sequence[Window], explained: bool) -> list[DeadRead]:
    """Reads of ended sessions answered 200, split by whether a partition explains them."""
    return [r for r in obs.dead_reads
            if r.revived and (not r.final and partitioned(episodes, r.dead.ended_by, r.call)) == explained]


def lost_jobs(obs: Observations) -> list[str]:
    acked = {e.job_id for e in obs.enqueues if e.call.ok}
    processed = {p.job_id for p in obs.processings}
    return sorted(acked - processed, key=lambda j: int(j[1:]))


# Run-at is kept to the millisecond (Redis's TIME, or the spool's clock, read in ms).
EARLY_SLACK_S = 0.005


def early_jobs(obs: Observations) -> list[Processing]:
    """Processings of a delayed job leased before its run-at: the fetch was answered before the
    first enqueue attempt of that id had even been sent plus the delay (the server took the
    enqueue, and set the run-at, no earlier than that)."""
    earliest: dict[str, float] = {}
    for e in obs.enqueues:
        if e.delay_s > 0:
            at = e.call.start + e.delay_s
            earliest[e.job_id] = min(earliest.get(e.job_id, at), at)
    return [p for p in obs.processings if p.job_id in earliest and p.fetch.end < earliest[p.job_id] - EARLY_SLACK_S]


def duplicates(obs: Observations, episodes: Sequence[Window], explained: bool) -> list[list[Processing]]:
    """Jobs processed more than once. A duplicate is explained when the first processing's ack
    was not acknowledged as completed, or its lease overlapped an outage episode."""
    by_job: dict[str, list[Processing]] = defaultdict(list)
    for p in obs.processings:
        by_job[p.job_id].append(p)
    out = []
    for runs in by_job.values():
        if len(runs) < 2:
            continue
        first = min(runs, key=lambda p: p.fetch.end)
        ack_ok = first.ack is not None and first.ack.ok and first.ack_outcome == "completed"
        is_explained = not ack_ok or any(e.overlaps(first.lease.start, first.lease.end) for e in episodes)
        if is_explained == explained:
            out.append(sorted(runs, key=lambda p: p.fetch.end))
    return out


def held(grants: Iterable[Grant]) -> list[Grant]:
    """Grants with a non-empty hold (a grant received after its lease ended held nothing)."""
    return [g for g in grants if g.end > g.start]


def by_name(grants: Iterable[Grant]) -> dict[str, list[Grant]]:
    out: dict[str, list[Grant]] = defaultdict(list)
    for g in sorted(held(grants), key=lambda g: g.start):
        out[g.name].append(g)
    return out


def double_grants(grants: Iterable[Grant]) -> list[tuple[Grant, Grant]]:
    """(earlier holder, grant) pairs where a hold began before an earlier one of the same name ended."""
    out = []
    for ordered in by_name(grants).values():
        holder: Grant | None = None
        for g in ordered:
            if holder is not None and g.start < holder.end:
                out.append((holder, g))
            if holder is None or g.end > holder.end:
                holder = g
    return out


def fence_inversions(grants: Iterable[Grant]) -> list[tuple[Grant, Grant]]:
    return [(a, b) for ordered in by_name(grants).values() for a, b in itertools.pairwise(ordered)
            if b.fence <= a.fence]


def in_episode(call: Call, episodes: Sequence[Window]) -> bool:
    return any(e.overlaps(call.start, call.end) for e in episodes)


def unreadable(obs: Observations, episodes: Sequence[Window]) -> tuple[int, int, int]:
    """Live sessions answered 404: (in an outage, by a server that had not served them),
    (in an outage, by one that had), (outside outages)."""
    not_served = served = outside = 0
    for u in obs.unreadable:
        if not in_episode(u.call, episodes):
            outside += 1
        elif u.served_here:
            served += 1
        else:
            not_served += 1
    return not_served, served, outside


def condition_patches(obs: Observations, episodes: Sequence[Window]) -> None:
    """Marks the record patches whose acknowledgement does not promise they apply: acknowledged
    in an outage episode after a delete of the record was sent to the other server in that
    episode (and not refused). The servers share nothing until both are back on Redis, so the
    patching server may not know the record was deleted; on replay the delete comes first by
    stamp, and a patch of a deleted record is dropped — as it would have been answered 404.
    Such a patch counts as a write of unknown outcome."""
    for register in obs.records:
        for i, w in enumerate(register.writes):
            if w.op != "patch" or not w.call.ok:
                continue
            episode = next((e for e in episodes if e.holds(w.call.end)), None)
            w.conditional = episode is not None and any(
                d.op == "delete" and d.call.inst != w.call.inst and d.call.outcome is not Outcome.REFUSED
                and episode.overlaps(d.call.start, d.call.end) for d in register.writes[:i])


def torn_records(obs: Observations) -> list[RegisterRead]:
    """Records read at the end whose data no put followed by patches of that id leaves (a
    field of one write with another's), unless already a phantom (an `at` nobody wrote)."""
    out = []
    for r in obs.reads:
        if r.kind != "record" or r.data is None or not isinstance(r.register, RecordRegister):
            continue
        if r.judgement().verdict is not Verdict.PHANTOM and not r.register.consistent(r.data):
            out.append(r)
    return out


@dataclass
class CounterOff:
    """A counter record whose final value on a server is outside [acknowledged, acknowledged +
    unknown-outcome increments]."""

    counter: CounterRecord
    inst: int
    value: int | None  # None: absent (read as 0)


def counters_off(obs: Observations) -> list[CounterOff]:
    out = []
    for c in obs.counters.values():
        for inst, value in sorted(c.final.items()):
            v = 0 if value is None else value
            if not c.acked <= v <= c.acked + c.unknown:
                out.append(CounterOff(c, inst, value))
    return out


def matches(spec: dict[str, Any], data: Any) -> bool:
    """Whether a record's data satisfies a query's where/range (bounds inclusive)."""
    if not isinstance(data, dict):
        return False
    where = spec.get("where", {})
    if any(data.get(k) != v for k, v in where.items()):
        return False
    bounds = spec.get("range")
    if bounds is None:
        return True
    x = data.get(bounds["field"])
    if not isinstance(x, int | float) or isinstance(x, bool):
        return False
    return bool(bounds.get("min", x) <= x <= bounds.get("max", x))


@dataclass
class IndexMismatch:
    """A query (paged to its end) that does not answer what the full scan says (for the scan
    itself: what the final reads by id found)."""

    query: RecordQuery
    missing: list[str]  # records that match but were not returned
    extra: list[str]  # records returned that do not match (or that the reference does not hold)
    repeated: list[str] = field(default_factory=list)  # returned more than once


def compare(q: RecordQuery, expected: set[str]) -> IndexMismatch | None:
    got = set(q.ids)
    repeated = sorted({i for i in q.ids if q.ids.count(i) > 1})
    if got == expected and not repeated:
        return None
    return IndexMismatch(q, sorted(expected - got), sorted(got - expected), repeated)


def index_mismatches(obs: Observations) -> list[IndexMismatch]:
    """Every index query against the full scan on the same server; and each scan against the
    ids the final reads found present there (the scan lists every record: one no request
    wrote, or one a read by id does not find, is a mismatch too). Queries a page of which was
    not answered are left out (counted as final reads unanswered)."""
    out = []
    for q in obs.record_queries:
        scan = obs.record_scans.get(q.inst)
        if scan is None or not scan.complete or not q.complete:
            continue
        found = compare(q, {i for i, d in scan.data.items() if matches(q.spec, d)})
        if found is not None:
            out.append(found)
    for inst, scan in sorted(obs.record_scans.items()):
        if scan.complete and inst in obs.record_present and inst not in obs.record_get_failed:
            found = compare(scan, obs.record_present[inst])
            if found is not None:
                out.append(found)
    return out


@dataclass
class Findings:
    """What each required figure counts, item by item."""

    lost_fields: list[RegisterRead]
    lost_deletes: list[RegisterRead]
    lost_jobs: list[str]
    revived_sessions: list[DeadRead]
    revived_cache: list[RegisterRead]
    phantoms: list[RegisterRead]
    refused_applied: list[RegisterRead]
    double_grants: list[tuple[Grant, Grant]]
    fence_inversions: list[tuple[Grant, Grant]]
    hangs: list[Call]
    duplicates: list[list[Processing]]
    early_jobs: list[Processing] = field(default_factory=list)
    lost_records: list[RegisterRead] = field(default_factory=list)
    revived_records: list[RegisterRead] = field(default_factory=list)
    torn_records: list[RegisterRead] = field(default_factory=list)
    counters_off: list[CounterOff] = field(default_factory=list)
    index_mismatches: list[IndexMismatch] = field(default_factory=list)


def findings(obs: Observations, calls: Sequence[Call], t: Timeline) -> Findings:
    condition_patches(obs, t.episodes)
    return Findings(
        lost_fields=select(obs.reads, "session", {Verdict.MISSING, Verdict.STALE}, final=True),
        lost_deletes=select(obs.reads, "cache", {Verdict.RESURRECTED}, final=True),
        lost_jobs=lost_jobs(obs),
        revived_sessions=revived(obs, t.episodes, explained=False),
        revived_cache=select(obs.reads, "cache", {Verdict.RESURRECTED}, final=False, episodes=t.episodes,
                             explained=False),
        phantoms=select(obs.reads, None, {Verdict.PHANTOM}),
        refused_applied=select(obs.reads, None, {Verdict.REFUSED_APPLIED}),
        double_grants=double_grants(obs.grants),
        fence_inversions=fence_inversions(obs.grants),
        hangs=[c for c in calls if c.error == "timeout"],
        duplicates=duplicates(obs, t.episodes, explained=False),
        early_jobs=early_jobs(obs),
        lost_records=select(obs.reads, "record", {Verdict.MISSING, Verdict.STALE}, final=True),
        revived_records=select(obs.reads, "record", {Verdict.RESURRECTED}, final=True),
        torn_records=torn_records(obs),
        counters_off=counters_off(obs),
        index_mismatches=index_mismatches(obs),
    )


def distinct(reads: Iterable[RegisterRead]) -> int:
    """How many session fields or cache keys the reads are of."""
    return len({id(r.register) for r in reads})


def when(calls: Iterable[Call], episodes: Sequence[Window], final: Iterable[bool]) -> str:
    """'N in outages, N after recovery, N at the end'."""
    where = Counter("at the end" if f else "in outages" if in_episode(c, episodes) else "between outages"
                    for c, f in zip(calls, final, strict=True))
    return ", ".join(f"{where[k]} {k}" for k in ("in outages", "between outages", "at the end") if where[k])


def required(f: Findings, t: Timeline, panics: int, unsettled: int) -> list[Figure]:
    fields, keys = distinct(f.lost_fields), distinct(f.lost_deletes)
    revived_n = len(f.revived_sessions) + len(f.revived_cache)
    sessions_when = when((r.call for r in f.revived_sessions), t.episodes, (r.final for r in f.revived_sessions))
    cache_when = when((r.call for r in f.revived_cache), t.episodes, (r.final for r in f.revived_cache))
    return [
        Figure("lost", fields + keys + len(f.lost_jobs),
               f"{fields} session fields below their last acknowledged value or missing at the end (on either "
               f"server); {keys} cache keys still holding a value put before their last acknowledged write, a "
               f"delete; {len(f.lost_jobs)} acknowledged jobs never processed", True),
        Figure("resurrected", revived_n,
               f"{len(f.revived_sessions)} reads answered 200 for a session id after its delete, rotation or "
               f"revocation was acknowledged ({sessions_when or 'none'}); {len(f.revived_cache)} cache reads "
               f"during the run of a value put before an acknowledged delete ({cache_when or 'none'}); partition "
               "reads excluded, see below", True),
        Figure("records lost", distinct(f.lost_records),
               "record ids whose final state on either server lacks the last acknowledged put or patch (gone, or "
               "an older write's data), and no write of unknown outcome explains it", True),
        Figure("records resurrected", distinct(f.revived_records),
               "record ids present at the end (on either server) with a put made before their last acknowledged "
               "write, a delete", True),
        Figure("record counters off", len(f.counters_off),
               "counter records whose final value (on a server) is below its acknowledged increments or above "
               "acknowledged + unknown-outcome ones", True),
        Figure("record index mismatches", len(f.index_mismatches),
               "queries by an equal or range index, paged to the end, not answering exactly the records of the "
               "full scan that match; scans not listing exactly the records found by id", True),
        Figure("phantom values", len(f.phantoms) + len(f.torn_records),
               f"reads of a value no request ever wrote ({len(f.torn_records)} of them records whose fields no put "
               "and patches of that id leave)", True),
        Figure("refused writes applied", len(f.refused_applied),
               "reads of a value written only by a request answered 4xx (e.g. a PATCH answered 404)", True),
        Figure("double grants", len(f.double_grants),
               "lock holds that began before another holder's of the same name ended", True),
        Figure("fence inversions", len(f.fence_inversions),
               "grants (in the order received) whose fence is not above the previous grant's", True),
        Figure("hangs", len(f.hangs), "requests over their client time limit", True),
        Figure("unexplained job duplicates", len(f.duplicates),
               "jobs processed again although the first processing was acknowledged outside any outage", True),
        Figure("delayed jobs run early", len(f.early_jobs),
               "processings of a job enqueued with a delay, leased before that delay had passed since its first "
               "enqueue attempt was sent", True),
        Figure("server panics", panics, "'panicked' in the servers' logs", True),
        Figure("servers not settled", unsettled,
               "servers not on redis with an empty journal 20 s after the traffic", True),
    ]


def reported(obs: Observations, t: Timeline) -> list[Figure]:
    condition_patches(obs, t.episodes)
    reads, ep = obs.reads, t.episodes
    stale = {Verdict.STALE, Verdict.MISSING}
    unexplained_stale = select(reads, None, stale, final=False, episodes=ep, explained=False)

    def stale_outside(kind: str) -> list[RegisterRead]:
        return [r for r in unexplained_stale if r.kind == kind and not in_episode(r.call, ep)]

    not_served, served, outside = unreadable(obs, ep)
    return [
        Figure("partition reads", len(revived(obs, ep, explained=True))
               + len(select(reads, "cache", {Verdict.RESURRECTED}, final=False, episodes=ep, explained=True)),
               "ended sessions or deleted cache values read from one server while the delete had been acknowledged "
               "by the other within the same outage (the servers share nothing until both are back on Redis)", False),
        Figure("stale reads, partition", len(select(reads, None, stale, final=False, episodes=ep, explained=True)),
               "reads older than a write acknowledged by the other server in the same outage", False),
        Figure("stale reads in outages, otherwise", sum(1 for r in unexplained_stale if in_episode(r.call, ep)),
               "reads in an outage older than a write acknowledged before it, or by the same server", False),
        Figure("stale session reads outside outages", len(stale_outside("session")),
               "session fields read outside outages below their last acknowledged value, or missing (a write lost "
               "— until a later write heals it — or a stale copy served)", False),
        Figure("stale cache reads outside outages", len(stale_outside("cache")),
               "cache reads outside outages of an older value than the last acknowledged put, or of none (outage "
               "writes replay as invalidations)", False),
        Figure("late writes", len(select(reads, None, {Verdict.LATE})),
               "reads of a write that failed (5xx or time-out) and took effect after a later acknowledged "
               "write", False),
        Figure("cache stale at end", len(select(reads, "cache", {Verdict.STALE}, final=True)),
               "final cache reads of a value older than the last acknowledged put", False),
        Figure("cache missing at end", len(select(reads, "cache", {Verdict.MISSING}, final=True)),
               "final cache reads without the last acknowledged put's value (expected after outage writes)", False),
        Figure("job duplicates explained", len(duplicates(obs, ep, explained=True)),
               "jobs processed again after a first processing whose ack failed or whose lease overlapped an "
               "outage", False),
        Figure("sessions unreadable in outages (not served there)", not_served,
               "404 for a live session during an outage from the server that had never answered for it", False),
        Figure("sessions unreadable in outages (served there)", served,
               "404 for a live session during an outage from a server that had answered for it before", False),
        Figure("sessions unreadable outside outages", outside, "404 for a live session outside any outage", False),
        Figure("sessions retired as uncertain", sum(1 for c in obs.chains if c.state == "uncertain"),
               "a rotation with an unknown outcome, or a delete or revocation never acknowledged: not checked", False),
        Figure("record patches conditional", sum(1 for r in obs.records for w in r.writes if w.conditional),
               "patches acknowledged in an outage after the other server was sent a delete of the record in it: "
               "judged as of unknown outcome (the delete may come first by stamp, then the patch is dropped)", False),
        Figure("record counters above acknowledged",
               sum(1 for c in obs.counters.values() for v in c.final.values() if (v or 0) > c.acked),
               "counter values (per server) above the acknowledged increments: increments of unknown outcome "
               "that landed", False),
        Figure("lock grants received after their lease", len(obs.grants) - len(held(obs.grants)),
               "left out of the lock checks", False),
        Figure("final reads unanswered", obs.unanswered_final, "final reads that got neither 200 nor 404", False),
    ]


def outcome_table(calls: Iterable[Call]) -> dict[str, Counter[str]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for c in calls:
        table[f"{c.cap} {c.op}"][c.label] += 1
    return table


def job_summary(obs: Observations) -> dict[str, int]:
    acked = {e.job_id for e in obs.enqueues if e.call.ok}
    unknown = {e.job_id for e in obs.enqueues if e.call.outcome is Outcome.UNKNOWN} - acked
    return {
        "enqueued (acknowledged)": len(acked),
        "of them delayed": len(acked & {e.job_id for e in obs.enqueues if e.delay_s > 0}),
        "enqueue outcome unknown": len(unknown),
        "processings": len(obs.processings),
        "distinct jobs processed": len({p.job_id for p in obs.processings}),
        "acks completed": sum(1 for p in obs.processings if p.ack_outcome == "completed"),
        "acks deferred": sum(1 for p in obs.processings if p.ack_outcome == "deferred"),
        "acks failed": sum(1 for p in obs.processings if p.ack is not None and not p.ack.ok),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def phase(call: Call, t: Timeline) -> str:
    if any(w.overlaps(call.start, call.end) for w in t.faults):
        return "fault"
    if any(w.holds(call.start) for w in t.recoveries):
        return "recovery"
    return "normal"


def latency_rows(calls: Sequence[Call], t: Timeline) -> list[tuple[str, dict[str, list[float]]]]:
    """Per capability (and all but long polls): seconds by phase, 'all' holding every phase."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for c in calls:
        if c.op.startswith("final") or c.cap == "spool":  # the checks after the traffic; the spool load (spool.py)
            continue
        p = phase(c, t)
        for name in (c.cap, "all but job fetch" if c.op != "fetch" else None):
            if name is not None:
                groups[name]["all"].append(c.seconds)
                groups[name][p].append(c.seconds)
    order = ["all but job fetch", "session", "cache", "job", "lock", "ratelimit", "record"]
    return [(name, groups[name]) for name in order if name in groups]


def record_summary(obs: Observations) -> str:
    """Record writes by operation and outcome, ids present at the end, scans, counters."""
    by: Counter[str] = Counter(f"{w.op} {w.call.outcome.value}" for r in obs.records for w in r.writes)
    writes = ", ".join(f"{k} {v}" for k, v in sorted(by.items()))
    present = ", ".join(f"{'AB'[i]} {len(p)}" for i, p in sorted(obs.record_present.items()))
    scans = ", ".join(f"{'AB'[i]} {len(set(s.ids))}" + ("" if s.complete else " (incomplete)")
                      for i, s in sorted(obs.record_scans.items()))
    acked = sum(c.acked for c in obs.counters.values())
    unknown = sum(c.unknown for c in obs.counters.values())
    return (f"{len(obs.records)} ids; writes: {writes or 'none'}; present at the end (by id): {present or '—'}; "
            f"full scan: {scans or '—'}; {len(obs.record_queries)} index queries; {len(obs.counters)} counters, "
            f"increments acknowledged {acked}, unknown {unknown}")


def fence_summary(grants: Sequence[Grant]) -> str:
    names = by_name(grants)
    return ", ".join(f"{n}: {len(g)} grants, fences {g[0].fence}–{g[-1].fence}" for n, g in sorted(names.items()) if g)
