"""The soak's markdown report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import checks
import spool
from checks import Figure, Timeline
from client import Call
from faults import Fault
from model import Observations


@dataclass
class RunInfo:
    date: str
    commit: str
    binary: str
    duration: float
    seed: int
    redis_version: str
    with_faults: bool
    settings: str
    logs: str
    t0: float
    loop_lag_max_s: float
    modes: str  # how long each server's /health said each mode
    findings: str  # explain.text of the required figures' findings


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fault_rows(faults: Sequence[Fault], t0: float) -> list[list[object]]:
    rows: list[list[object]] = []
    for i, f in enumerate(faults, 1):
        back = [secs(None if b is None else b - f.end) for b in f.back]
        loading = "yes" if f.loading_seen else ("**no**" if f.kind == "loading" else "no")
        kind = f.kind if f.follows is None else f"{f.kind}, right after #{f.follows}"
        rows.append([i, kind, f"{f.start - t0:.1f}", secs(f.down_s) + ("" if f.answered else " (never answered)"),
                     loading, *back, " · ".join(f.modes)])
    return rows


def faults_section(info: RunInfo, faults: Sequence[Fault]) -> list[str]:
    if not info.with_faults:
        return ["## Faults", "", "None: a control run (`--no-faults`).", ""]
    loading = [f for f in faults if f.kind == "loading"]
    seen = sum(1 for f in loading if f.loading_seen)
    lines = ["## Faults", "",
             "Start is seconds after the traffic began; *down* is until Redis answered PING again; *A/B back* "
             "is how long after that each server's /health first said mode redis with an empty journal; *modes* "
             "are what /health "
             "said from the fault until both were back. A fault *right after* another was injected as soon as "
             "one server was back on redis from it.", ""]
    lines += table(["#", "kind", "start (s)", "down (s)", "LOADING seen", "A back (s)", "B back (s)", "modes A · B"],
                   fault_rows(faults, info.t0))
    fillers = sorted({f.filler for f in loading if f.filler is not None})
    lines += ["", f"LOADING restarts: {len(loading)}, of which {seen} were seen answering `LOADING` to PING "
              f"(filler keys in db 9 at the restart: {', '.join(map(str, fillers)) or '—'})."
              + ("" if seen == len(loading) else " **A LOADING restart was not observed as LOADING.**"), ""]
    return lines


def label_order(label: str) -> tuple[int, str]:
    if label == "2xx":
        return 0, label
    if label.isdigit():
        return 1, label
    return 2, label


def requests_section(calls: Sequence[Call]) -> list[str]:
    outcomes = checks.outcome_table(calls)
    labels = sorted({label for c in outcomes.values() for label in c}, key=label_order)
    total: Counter[str] = Counter()
    rows: list[list[object]] = []
    for name in sorted(outcomes):
        counts = outcomes[name]
        total.update(counts)
        rows.append([name, sum(counts.values()), *(counts.get(label, "") for label in labels)])
    rows.append(["**all**", sum(total.values()), *(total.get(label, "") for label in labels)])
    return ["## Requests", "", "By capability, operation and outcome (status, or the client-side error).", "",
            *table(["request", "total", *labels], rows), ""]


def figures_section(title: str, figures: Sequence[Figure]) -> list[str]:
    rows = [[f.name, f"**{f.value}**" if f.required and f.value else f.value, f.meaning] for f in figures]
    return [f"## {title}", "", *table(["figure", "value", "what it counts"], rows), ""]


def ms(values: list[float], q: float) -> str:
    p = checks.percentile(values, q)
    return "—" if p is None else f"{p * 1000:.0f}"


def latency_section(calls: Sequence[Call], t: Timeline) -> list[str]:
    rows: list[list[object]] = []
    for name, phases in checks.latency_rows(calls, t):
        row: list[object] = [name]
        for p in ("all", "fault", "recovery"):
            values = phases.get(p, [])
            row += [ms(values, 0.5), ms(values, 0.99), len(values)]
        rows.append(row)
    header = ["requests", "p50", "p99", "n", "fault p50", "fault p99", "n", "recovery p50", "recovery p99", "n"]
    return ["## Latency (ms)", "",
            "*fault*: the request overlapped a fault (until Redis answered); *recovery*: it started within 5 s "
            "after a fault ended. Job fetches are long polls (wait 1 s); lock acquires wait up to 200 ms.", "",
            *table(header, rows), ""]


def spool_rows(name: str, phases: dict[str, list[float]], caps: Sequence[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for cap in caps:
        values = phases.get(cap, [])
        top = "—" if not values else f"{max(values) * 1000:.0f}"
        rows.append([name if cap == "all" else f"{name}: {cap}", ms(values, 0.5), ms(values, 0.99), top, len(values)])
    return rows


def spool_load_text(s: spool.SpoolLoad, f: Fault, t0: float) -> str:
    took = secs(None if s.load_end is None or s.load_start is None else s.load_end - s.load_start)
    failed = sum(1 for c in s.batch_calls if not c.ok)
    return (f"During fault {s.fault_no} ({f.kind} at {f.start - t0:.1f} s) server {'AB'[s.inst]} took {s.acked:,} "
            f"jobs into queue `{spool.QUEUE}` ({len(s.batch_calls)} `POST /v1/queues/{spool.QUEUE}/batch` of "
            f"{spool.BATCH:,}, {failed} not answered 2xx; {s.created:,} answered created) in {took} s; /health said "
            f"`{s.mode_at_load}` before the first batch. Still in the outage it said {s.spooled_seen} waiting (its "
            f"SQLite spool; /health then: `{s.spooled_mode}`). Redis was kept down until the batches were answered. "
            "Nobody fetches that queue; the job checks only know `chaos`.")


def spool_drain_text(summary: spool.Summary, t0: float) -> str:
    s, f, name = summary.load, summary.fault, "AB"[summary.load.inst]
    back = "never" if summary.back is None else f"{summary.back - f.end:.2f} s after Redis answered"
    if s.drained_at is None:
        last = s.last_waiting if s.last_waiting is not None else "—"
        drained = f"**not all in Redis** by the end (last `waiting` seen on mode redis: {last})"
    else:
        drained = f"**{s.drained_at - f.end:.2f} s** after Redis answered" + (
            "" if summary.back is None else f", {s.drained_at - summary.back:.2f} s after {name} was back on redis")
    finals = ", ".join(f"{'AB'[i]} {n if n is not None else '—'}" for i, n in enumerate(s.final_waiting)) or "—"
    return (f"Redis answered again at {f.end - t0:.1f} s; {name} was back on redis (mode redis, empty journal) "
            f"{back}. All {s.acked:,} in Redis: {drained} (the first `GET /v1/queues/{spool.QUEUE}` on {name} "
            f"answering `waiting` ≥ {s.acked:,} between two /health saying `redis`, polled every "
            f"{spool.POLL_S * 1000:.0f} ms; the time is that answer's receipt, an upper bound). `waiting` after the "
            f"traffic: {finals}.")


def spool_latency_text(summary: spool.Summary, t0: float) -> str:
    w, name, other = summary.window, "AB"[summary.load.inst], "AB"[1 - summary.load.inst]
    full = summary.back is not None and w.end >= summary.back + spool.TAIL_S - 1e-6
    cut = "" if full else ", cut short by the next fault or the end of the traffic"
    p99 = checks.percentile(summary.here.get("all", []), 0.99)
    target = "—" if p99 is None else ("met" if p99 < 0.1 else "**not met**")
    return (f"Latency (ms) of the traffic sent to {name} from Redis answering until 5 s after {name} was back on "
            f"redis ({w.start - t0:.1f}–{w.end - t0:.1f} s{cut}; the next fault comes at least "
            f"{spool.MARGIN_S:.0f} s after it), and for comparison of the traffic sent to {other} in the same window. "
            "Left out: " + "; ".join(spool.EXCLUDED.values()) + "; the spool load and its polls. Counted: every "
            "other request of the traffic (session, cache, job enqueue and ack, lock release, rate-limit check, "
            "record writes). "
            f"p99 under 100 ms (the outage issue's target) on {name}: {target}.")


def spool_section(summary: spool.Summary | None, t0: float) -> list[str]:
    title = f"## Recovery with {spool.JOBS:,} spooled jobs"
    if summary is None:
        return [title, "", "Not measured: no SIGKILL outage in this run.", ""]
    name, other = "AB"[summary.load.inst], "AB"[1 - summary.load.inst]
    rows = spool_rows(f"{name} (spool)", summary.here, ("all", *spool.ROWS))
    for phases in summary.other:
        rows += spool_rows(f"{other} (no spool)", phases, ("all",))
    return [title, "", spool_load_text(summary.load, summary.fault, t0), "", spool_drain_text(summary, t0), "",
            spool_latency_text(summary, t0), "", *table(["requests", "p50", "p99", "max", "n"], rows), ""]


def details_section(obs: Observations) -> list[str]:
    jobs = checks.job_summary(obs)
    lost = checks.lost_jobs(obs)
    states = Counter(obs.job_states.values())
    lines = ["## Details", "",
             "Jobs: " + ", ".join(f"{k} {v}" for k, v in jobs.items()) + ".",
             "", "Locks: " + (checks.fence_summary(obs.grants) or "no grants") + ".",
             "", "Records: " + checks.record_summary(obs) + "."]
    if lost:
        lines += ["", f"Unprocessed jobs ({len(lost)}; state at the end: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(states.items())) + "): " + ", ".join(lost[:20])
                  + (" …" if len(lost) > 20 else "") + "."]
    dead = Counter(d.reason for d in obs.dead)
    lines += ["", f"Sessions: {len(obs.chains)} created, ended ids by cause: "
              + ", ".join(f"{k} {v}" for k, v in sorted(dead.items())) + "; reads of ended ids: "
              + f"{sum(1 for r in obs.dead_reads if not r.final)} during the run, "
              + f"{sum(1 for r in obs.dead_reads if r.final)} at the end.", ""]
    return lines


def render(info: RunInfo, faults: Sequence[Fault], calls: Sequence[Call], obs: Observations, t: Timeline, *,
           required: Sequence[Figure], reported: Sequence[Figure], spooled: spool.Summary | None = None) -> str:
    passed = all(f.value == 0 for f in required)
    lines = ["# Chaos soak", "",
             f"{info.date} · work tree at `{info.commit}` · binary `{info.binary}` · traffic {info.duration:.0f} s · "
             f"seed {info.seed} · Redis {info.redis_version}", "",
             f"Two `redkit serve` on one redis-server (AOF, fsync always); {info.settings}. "
             f"Soak event-loop lag at most {info.loop_lag_max_s * 1000:.0f} ms. Logs: `{info.logs}`.", "",
             f"Modes /health reported (sampled every 0.1 s, traffic and checks): {info.modes}.", ""]
    lines += faults_section(info, faults)
    lines += figures_section("Required (must be 0)", required)
    if any(f.value for f in required):
        lines += ["## Findings", "", "What the non-zero required figures count (at most 5 of each kind).", "",
                  info.findings]
    lines += figures_section("Reported", reported)
    lines += requests_section(calls)
    lines += latency_section(calls, t)
    if info.with_faults:
        lines += spool_section(spooled, info.t0)
    lines += details_section(obs)
    lines += [f"RESULT: {'PASS' if passed else 'FAIL'}", ""]
    return "\n".join(lines)
