"""Spells out each finding behind a required figure, with the requests involved (times are
seconds after the traffic began; servers are A and B), so a failure can be traced in the logs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import checks
from checks import CounterOff, Findings, IndexMismatch
from client import Call, Outcome
from model import DeadRead, Grant, Observations, Processing, RegisterRead, Verdict, Window

SERVERS = "AB"


@dataclass
class Clock:
    t0: float
    episodes: Sequence[Window]

    def at(self, t: float) -> str:
        return f"{t - self.t0:.3f}"

    def call(self, c: Call) -> str:
        where = next((f" [outage {i}]" for i, e in enumerate(self.episodes, 1) if e.holds(c.start)), "")
        target = f" `{c.target}`" if c.target else ""
        return f"{c.op}{target} on {SERVERS[c.inst]} {self.at(c.start)}–{self.at(c.end)} s → {c.label}{where}"


def register_read(k: Clock, r: RegisterRead) -> str:
    j = r.judgement()
    basis = "none" if j.basis is None else f"{j.basis.value} ({k.call(j.basis.call)})"
    recent = "; ".join(f"{w.value} {w.outcome.value}{' (conditional)' if w.conditional else ''} ({k.call(w.call)})"
                       for w in r.register.writes[:r.upto][-(8 if r.kind == "record" else 4):])
    final = " at the end" if r.final else ""
    data = f" (data {r.data})" if r.data is not None else ""
    return (f"{r.kind} {r.register.name}: read {r.value}{data} [{j.verdict.value}]{final} — {k.call(r.call)}; "
            f"last acknowledged write: {basis}; last writes before the read: {recent}")


def counter_off(k: Clock, c: CounterOff) -> str:
    value = "absent" if c.value is None else c.value
    unknown = "; ".join([k.call(x) for x in c.counter.incrs if x.outcome is Outcome.UNKNOWN][:10])
    return (f"{c.counter.rid} on {SERVERS[c.inst]}: {value}, acknowledged increments {c.counter.acked}, unknown "
            f"{c.counter.unknown} (first increment {k.call(c.counter.incrs[0])}; unknown: {unknown or 'none'})")


def index_mismatch(k: Clock, m: IndexMismatch) -> str:
    q = m.query

    def ids(xs: list[str]) -> str:
        return ", ".join(xs[:20]) + (" …" if len(xs) > 20 else "")

    reference = "the ids the final reads found" if q.label == "scan" else "the full scan"
    return (f"{q.label} on {SERVERS[q.inst]} ({len(q.ids)} returned, {len(q.calls)} pages) against {reference}: "
            f"missing {len(m.missing)} [{ids(m.missing)}], extra {len(m.extra)} [{ids(m.extra)}], repeated "
            f"{len(m.repeated)} [{ids(m.repeated)}]")


def dead_read(k: Clock, r: DeadRead) -> str:
    final = " at the end" if r.final else ""
    answer = f" answered {r.dead.answer}" if r.dead.answer else ""
    return (f"session {r.dead.sid[:10]}… ended by {r.dead.reason} ({k.call(r.dead.ended_by)}{answer}); "
            f"read answered 200{final}: {k.call(r.call)}")


def grant(k: Clock, g: Grant) -> str:
    return f"fence {g.fence} held {k.at(g.start)}–{k.at(g.end)} s (acquire {k.call(g.acquire)})"


def processing(k: Clock, p: Processing) -> str:
    ack = "no ack" if p.ack is None else f"ack {k.call(p.ack)} outcome {p.ack_outcome}"
    return f"fetched {k.call(p.fetch)}, {ack}"


def sections(f: Findings, k: Clock, job_states: dict[str, str]) -> list[tuple[str, list[str]]]:
    hangs = Counter(f"{c.cap} {c.op} on {SERVERS[c.inst]}" for c in f.hangs)
    hangs_title = "hangs: " + ", ".join(f"{n} × {what}" for what, n in hangs.most_common())
    return [
        ("lost session fields", [register_read(k, r) for r in f.lost_fields]),
        ("lost cache deletes", [register_read(k, r) for r in f.lost_deletes]),
        ("lost jobs", [f"{j}: state at the end {job_states.get(j, '?')}" for j in f.lost_jobs]),
        ("resurrected sessions", [dead_read(k, r) for r in f.revived_sessions]),
        ("resurrected cache values", [register_read(k, r) for r in f.revived_cache]),
        ("phantom values", [register_read(k, r) for r in f.phantoms]),
        ("refused writes applied", [register_read(k, r) for r in f.refused_applied]),
        ("double grants", [f"{a.name}: {grant(k, a)}; then {grant(k, b)}" for a, b in f.double_grants]),
        ("fence inversions", [f"{a.name}: {grant(k, a)}; then {grant(k, b)}" for a, b in f.fence_inversions]),
        (hangs_title, [k.call(c) for c in f.hangs]),
        ("lost records", [register_read(k, r) for r in f.lost_records]),
        ("resurrected records", [register_read(k, r) for r in f.revived_records]),
        ("torn records", [register_read(k, r) for r in f.torn_records]),
        ("record counters off", [counter_off(k, c) for c in f.counters_off]),
        ("record index mismatches", [index_mismatch(k, m) for m in f.index_mismatches]),
        ("unexplained job duplicates",
         [f"{runs[0].job_id}: " + " | ".join(processing(k, p) for p in runs) for runs in f.duplicates]),
    ]


def notable(obs: Observations, k: Clock) -> list[tuple[str, list[str]]]:
    """Reported figures worth reading one by one: what went wrong outside outages."""
    stale = checks.select(obs.reads, None, {Verdict.STALE, Verdict.MISSING}, final=False)
    outside = [r for r in stale if not checks.in_episode(r.call, k.episodes)]
    stale_end = checks.select(obs.reads, "cache", {Verdict.STALE}, final=True)
    return [
        ("(reported) stale reads outside outages", [register_read(k, r) for r in outside]),
        ("(reported) cache values stale at the end", [register_read(k, r) for r in stale_end]),
        ("(reported) live sessions unreadable outside outages",
         [k.call(u.call) for u in obs.unreadable if not checks.in_episode(u.call, k.episodes)]),
    ]


def text(f: Findings, obs: Observations, t0: float, episodes: Sequence[Window], limit: int | None) -> str:
    """Every finding (or the first `limit` of each kind), as markdown; without a limit also the
    notable reported ones."""
    k = Clock(t0, episodes)
    lines = ["Outage episodes (fault until both servers were back on redis, journal empty): "
             + (", ".join(f"{i}: {k.at(e.start)}–{k.at(e.end)} s" for i, e in enumerate(episodes, 1)) or "none"), ""]
    extra = notable(obs, k) if limit is None else []
    for title, items in sections(f, k, obs.job_states) + extra:
        if not items:
            continue
        shown = items if limit is None else items[:limit]
        lines += [f"**{title}** ({len(items)})", "", *(f"- {i}" for i in shown)]
        if len(shown) < len(items):
            lines.append(f"- … {len(items) - len(shown)} more in findings.md in the logs directory")
        lines.append("")
    return "\n".join(lines)
