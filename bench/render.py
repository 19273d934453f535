"""Turns bench/run's measurements into RESULTS.md: medians per scenario and side, and the
ratio of the scenario's first side (redkit's primary configuration) to each other side.
bench/METHOD.md (how each side is used) and bench/PROFILES.md (where redkit loses, and why)
are included as they are.

TSV columns: scenario, concurrency, side, run, ops/s[, p50 ms, p99 ms]. The optional sixth
argument, the records' memory TSV (run, side, bytes per 1,000 documents, keys, average
document bytes), becomes a table of its own: lower is better there."""

import collections
import contextlib
import datetime
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys

DESCRIPTIONS = {
    "cache_get": "Cache read through Redis, L1 off (100-byte value, 1000 keys)",
    "cache_set": "Cache write through Redis, L1 off (100-byte value, TTL 300 s)",
    "l1_get": "Cache read answered by L1 (100-byte value, 1000 keys)",
    "ratelimit": "Rate-limit decision through Redis (limit never reached)",
    "lock": "Lock acquire + release through Redis",
    "jobs": "No-op jobs end to end through Redis (jobs/s)",
    "http_ratelimit": "Server over HTTP: rate-limit check (requests/s)",
    "http_cache_get": "Server over HTTP: cache GET of a 100-byte value (requests/s)",
    "py_cache_get": "From Python: a cache GET of a 100-byte value, one call at a time (redkit's Python client over HTTP vs redis-py asyncio to the same Redis)",
    "py_record_put": "From Python: a record put (~500-byte document moving between an equal and a range index), one call at a time (redkit's Python client over HTTP vs redis-py asyncio by hand: WATCH, read, MULTI)",
    "py_record_get": "From Python: a record get by id (~500-byte document), one call at a time (redkit's Python client over HTTP vs redis-py asyncio HGETALL)",
    "py_record_query": "From Python: a record query — equality on an indexed field and a score range, the first page of 20 in score order with the documents — one call at a time (redkit's Python client over HTTP vs redis-py asyncio ZINTERSTORE + pipelined HGETALLs)",
    "py_counter_incr": "From Python: a counter increment for one of 5 routes and the total, minute/hour/day buckets, one call at a time (redkit's Python client over HTTP vs redis-py asyncio INCRBY + EXPIRE in one MULTI)",
    "outage_get": "Outage cost: cache read while the breaker is open vs embedded-only",
    "outage_set": "Outage cost: cache write while the breaker is open vs embedded-only",
    "pubsub_fanout": "Pub/sub: publish over HTTP to one server → 1,000 WebSocket subscribers over two servers (deliveries/s; latency publish → receive)",
}

# Sides that bound what redkit can reach rather than compete with it.
CEILINGS = ("redis-benchmark", "moka")

HERE = os.path.dirname(__file__)
METHOD = open(os.path.join(HERE, "METHOD.md")).read()
# Why redkit loses where it does, from profiles taken by hand (written for the last full run).
PROFILES = open(os.path.join(HERE, "PROFILES.md")).read()


def command_output(args):
    return subprocess.run(args, capture_output=True, text=True).stdout.strip()


def versions():
    out = {}
    lock = os.path.join("bench", ".peers", "node", "package-lock.json")
    if os.path.exists(lock):
        packages = json.load(open(lock)).get("packages", {})
        for name in ("ioredis", "rate-limiter-flexible", "redlock", "bullmq", "socket.io",
                     "@socket.io/redis-adapter", "socket.io-client", "ws"):
            out[name] = packages.get(f"node_modules/{name}", {}).get("version", "?")
    py = os.path.join("bench", ".peers", "py", "bin", "python")
    if os.path.exists(py):
        listing = command_output([py, "-m", "pip", "list", "--format=json"])
        for p in json.loads(listing or "[]"):
            if p["name"].lower() in ("redis", "limits", "python-redis-lock", "coredis", "rq"):
                out[p["name"]] = p["version"]
    # What was built and installed, not what the pins say.
    cargo_lock = open(os.path.join("bench", "peers", "rust", "Cargo.lock")).read()
    for name in ("apalis", "apalis-redis"):
        found = re.search(rf'name = "{name}"\nversion = "([^"]+)"', cargo_lock)
        out[name] = found.group(1) if found else "?"
    throttlecrab = os.path.join("bench", ".peers", "cargo", "bin", "throttlecrab-server")
    if os.path.exists(throttlecrab):
        out["throttlecrab-server"] = command_output([throttlecrab, "--version"]).split(" ")[-1]
    for package in ("wrk", "webdis"):
        out[package] = command_output(["dpkg-query", "-W", "-f=${Version}", package]) or "?"
    out["node"] = command_output(["node", "--version"])
    out["python"] = platform.python_version()
    out["rustc"] = command_output(["rustc", "--version"]).split(" ")[1]
    return out


# The founding service's budget for records in Redis (issue 18): 1 MB per 1,000 documents.
MEMORY_BUDGET = 1_000_000


def print_memory(path):
    """The records' memory table: median bytes per 1,000 documents per side, over runs."""
    per_side = collections.defaultdict(list)
    keys, doc_bytes = {}, {}
    for line in open(path):
        _run, side, per_1000, nkeys, doc = line.rstrip("\n").split("\t")
        per_side[side].append(float(per_1000))
        keys[side], doc_bytes[side] = nkeys, doc
    if not per_side:
        return
    lead = next(iter(per_side))
    lead_bytes = statistics.median(per_side[lead])
    doc = next(iter(doc_bytes.values()))
    print("## Redis memory per 1,000 records — documents of about 500 bytes, an equal and a range index\n")
    print(f"1,000 documents ({doc} bytes of JSON on average) written once per run into an empty key space, then `MEMORY USAGE key SAMPLES 0` summed over every key of the side (SCAN by prefix); TTLs set as each side sets them. Lower is better; the founding service budgeted 1 MB (taken as 1,000,000 bytes) per 1,000.\n")
    print(f"| side | bytes per 1,000 documents (median) | keys | runs | {lead} ÷ side | of the 1 MB budget |")
    print("|---|---:|---:|---:|---:|---:|")
    more = []
    for side, values in per_side.items():
        med = statistics.median(values)
        ratio = "—" if side == lead else f"{lead_bytes / med:.2f}"
        print(f"| {side} | {med:,.0f} | {keys[side]} | {len(values)} | {ratio} | {med / MEMORY_BUDGET:.0%} |")
        if side != lead and med < lead_bytes:
            more.append(f"{side} ({lead} ÷ {side} = {lead_bytes / med:.2f})")
    print()
    if more:
        print(f"{lead} uses more memory than " + ", ".join(more) + ".\n")


# The published file, and the runs each of its figures must be the median of.
PUBLISHED = "RESULTS.md"
FULL_RUNS = 5


def refusal(out, runs, rates):
    """Why `out` must not be written from these figures, or None: the published results
    come from a full run only, every figure a median of FULL_RUNS runs or more."""
    if os.path.basename(out) != PUBLISHED:
        return None
    if int(runs) < FULL_RUNS:
        return f"a run of {runs} per side (a quick run) is not published: {PUBLISHED} takes medians of {FULL_RUNS} or more"
    short = [f"{s} c={c} {side}: {len(v)}" for (s, c, side), v in rates.items() if len(v) < FULL_RUNS]
    if short:
        return f"rows with fewer than {FULL_RUNS} runs are not published: " + ", ".join(short)
    return None


def main():
    args = sys.argv[1:]
    out = None
    if args[:1] == ["--out"]:
        out, args = args[1], args[2:]
    tsv, runs, ops, secs, redis_version = args[:5]
    memory_tsv = args[5] if len(args) > 5 else None
    rates = collections.defaultdict(list)
    latencies = collections.defaultdict(list)
    order, first = [], {}
    for line in open(tsv):
        scenario, conc, side, _run, rate, *latency = line.rstrip("\n").split("\t")
        key = (scenario, int(conc))
        if key not in order:
            order.append(key)
            first[key] = side
        rates[key + (side,)].append(float(rate))
        if latency:
            latencies[key + (side,)].append(tuple(float(x) for x in latency))
    if out is None:
        render(runs, ops, secs, redis_version, memory_tsv, rates, latencies, order, first)
        return
    why = refusal(out, runs, rates)
    if why:
        sys.exit(f"bench/render.py: not writing {out}: {why}")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        render(runs, ops, secs, redis_version, memory_tsv, rates, latencies, order, first)
    with open(out, "w") as f:
        f.write(text.getvalue())


def render(runs, ops, secs, redis_version, memory_tsv, rates, latencies, order, first):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print("# Benchmarks: redkit beside its peers\n")
    print(f"Generated by `bench/run` on {datetime.date.today()} — {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Redis {redis_version.split(' ')[2].removeprefix('v=')}.")
    print(f"Each figure is the median of {runs} runs, sides alternating within each run, all against one dedicated redis-server on loopback (no persistence). A run is {ops} operations (locks and jobs: a quarter of that; L1 reads: 50 times that; Python record calls: half of it, record queries a tenth; pub/sub: {int(ops) // 100} messages, each to 1,000 subscribers) or, over HTTP, {secs} s of wrk.")
    print("Higher is better; the ratio divides the first row (redkit as it is meant to run) by each other row: above 1, redkit is faster.\n")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".\n")
    print(METHOD)
    losses = []
    for scenario, conc in order:
        lead = first[(scenario, conc)]
        lead_rate = statistics.median(rates[(scenario, conc, lead)])
        with_latency = any(k[:2] == (scenario, conc) for k in latencies)
        print(f"## {DESCRIPTIONS.get(scenario, scenario)} — concurrency {conc}\n")
        print(f"| side | ops/s (median) | runs | {lead} ÷ side |" + (" p50 / p99 latency (median) |" if with_latency else ""))
        print("|---|---:|---:|---:|" + ("---:|" if with_latency else ""))
        for (s, c, side), values in rates.items():
            if (s, c) != (scenario, conc):
                continue
            med = statistics.median(values)
            ratio = "—" if side == lead else f"{lead_rate / med:.2f}"
            row = f"| {side} | {med:,.0f} | {len(values)} | {ratio} |"
            if with_latency:
                lat = latencies.get((s, c, side))
                if lat:
                    p50 = statistics.median(x[0] for x in lat)
                    p99 = statistics.median(x[1] for x in lat)
                    row += f" {p50:.2f} / {p99:.2f} ms |"
                else:
                    row += " |"
            print(row)
            if side != lead and not side.startswith("redkit") and lead_rate < med:
                what = " (a floor or ceiling, not a peer)" if side in CEILINGS else ""
                losses.append(f"- {DESCRIPTIONS.get(s, s)}, concurrency {c}: {side}{what} is faster ({lead} ÷ {side} = {lead_rate / med:.2f}).")
        print()
    if memory_tsv and os.path.exists(memory_tsv):
        print_memory(memory_tsv)
    print("## Where redkit is slower\n")
    print("Computed from the tables above: every row that beats redkit's.\n")
    print("\n".join(losses) if losses else "Nowhere against a peer in this run.")
    print()
    print(PROFILES)


if __name__ == "__main__":
    main()
