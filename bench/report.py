"""Turn a results JSON of ``bench/run.py`` into ``bench/RESULTS.md``.

    bench/.venv/bin/python bench/report.py [bench/results/latest.json]

Every figure is the median over the runs of one invocation, and every comparison is a ratio
between libraries measured in that same invocation. Text between the markers
``<!-- analysis:start -->`` and ``<!-- analysis:end -->`` of an existing RESULTS.md (the
hand-written analysis) is kept when the file is regenerated.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
START, END = "<!-- analysis:start -->", "<!-- analysis:end -->"
PEERS = ("pgqueuer", "pgqueuer-asyncpg", "oban", "procrastinate")

# Targets for `job` (issue 11, "lead every Python peer on speed, measured side by side"), each
# against the BEST PEER of the same run (the highest rate / lowest latency over PEERS).
SINGLE_SPAWN_VS_PEER = 1.5
BULK_SPAWN_VS_PEER = 1.2
LATENCY_P50_MS = 0.8  # and no worse than the best peer's p50
LATENCY_P99_MS = 2.0
PROCESS_1W_VS_PEER = 1.3  # at 10,000 and at 100,000 jobs
PROCESS_2W_VS_PEER = 1.5
DEFAULT_WITHIN = 0.10  # job's default poller config within 10% of its best (10,000, 1 worker)
BACKLOG_MAX_RATIO = 1.2  # per-job cost at 1,000,000 pending vs 10,000
RSS_MAX_RATIO = 1.2  # worker RSS at the end of the 1M drain vs at 10% of it


def med(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


# -- summaries --------------------------------------------------------------------------------


def spawn_summary(sc: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    return {
        lib: {mode: med(rates) for mode, rates in modes.items()}
        for lib, modes in sc["samples"].items()
    }


def process_summary(sc: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """(size, workers, lib, config) -> medians."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in sc["results"]:
        groups.setdefault((r["size"], r["workers"], r["lib"], r["config"]), []).append(r)
    return {
        key: {
            "rate": med(r["rate"] for r in rs),
            "min": min(r["rate"] for r in rs),
            "max": max(r["rate"] for r in rs),
            "runs": len(rs),
            "worker_cpu": med(r.get("worker_cpu_us_per_job") for r in rs),
            "pg_cpu": med(r.get("pg_cpu_us_per_job") for r in rs),
            "peak_rss": med(max(r["peak_rss_kb"]) / 1024 for r in rs),
        }
        for key, rs in groups.items()
    }


def best_by_lib(summary: dict[tuple[Any, ...], dict[str, Any]], size: int, workers: int) -> dict:
    best: dict[str, tuple[str, float]] = {}
    for (s, w, lib, config), v in summary.items():
        if s != size or w != workers or v["rate"] is None:
            continue
        if lib not in best or v["rate"] > best[lib][1]:
            best[lib] = (config, v["rate"])
    return best


def latency_summary(sc: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out = {}
    for lib, runs in sc["runs"].items():
        runs = [r for r in runs if r]
        out[lib] = {
            "p50": med(pct(r, 0.5) for r in runs),
            "p99": med(pct(r, 0.99) for r in runs),
            "mean": med(statistics.fmean(r) for r in runs),
            "max": max((max(r) for r in runs), default=None),
            "samples": sum(len(r) for r in runs),
            "runs": len(runs),
        }
    return out


def backlog_summary(sc: dict[str, Any]) -> dict[str, dict[int, float | None]]:
    out: dict[str, dict[int, float | None]] = {}
    for r in sc["results"]:
        out.setdefault(r["lib"], {}).setdefault(r["backlog"], [])  # type: ignore[arg-type]
        out[r["lib"]][r["backlog"]].append(r["per_job_us"])  # type: ignore[union-attr]
    return {lib: {b: med(v) for b, v in d.items()} for lib, d in out.items()}  # type: ignore[arg-type]


# -- sections ---------------------------------------------------------------------------------


def machine_section(data: dict[str, Any]) -> list[str]:
    m = data["machine"]
    v = m["versions"]
    rows = [
        ["CPUs (nproc)", str(m["nproc"])],
        ["CPU model", m["cpu"]],
        ["Memory", m["memory"]],
        ["Kernel", m["kernel"]],
        ["PostgreSQL", m["postgres"].split(" on ")[0]],
        *(
            [
                [
                    f"PostgreSQL settings ({name} profile)",
                    ", ".join(f"{k}={x}" for k, x in p.get("postgres_settings", {}).items()),
                ]
                for name, p in data["profiles"].items()
            ]
            if "profiles" in data
            else [
                [
                    "PostgreSQL settings",
                    ", ".join(f"{k}={x}" for k, x in m["postgres_settings"].items()),
                ]
            ]
        ),
        ["Server", m["server"]],
        ["Python", m["python"]],
        [
            "Python (oban's agents)",
            m["python312"].get("python", m["python312"].get("error", "-"))
            if "python312" in m
            else "-",
        ],
        ["job", f"{v.get('job', '?')} (commit {m['job_commit']})"],
        *(
            [
                [
                    "src/ at the end of the run",
                    f"{data['job_commit_end']} (changed meanwhile; the run used a copy of src/job"
                    " taken at its start)",
                ]
            ]
            if data.get("job_commit_end", m["job_commit"]) != m["job_commit"]
            else []
        ),
        ["pgqueuer / asyncpg", f"{v.get('pgqueuer', '-')} / {v.get('asyncpg', '-')}"],
        ["oban", m.get("python312", {}).get("versions", {}).get("oban", "-")],
        ["procrastinate", v.get("procrastinate", "-")],
        ["psycopg / psycopg-pool", f"{v.get('psycopg', '-')} / {v.get('psycopg-pool', '-')}"],
    ]
    for lib, why in (data.get("skipped_libs") or {}).items():
        rows.append([f"{lib}: not measured", why])
    for name, p in data.get("profiles", {}).items():
        for lib, why in (p.get("install_failed") or {}).items():
            rows.append([f"{lib}: install failed ({name})", why.splitlines()[-1][:300]])
    loads = [
        f"{pname}/{name} {sc['loadavg_before_after'][0][0]:.1f}"
        f"->{sc['loadavg_before_after'][1][0]:.1f}"
        for pname, scs in profile_scenarios(data).items()
        for name, sc in scs.items()
        if "loadavg_before_after" in sc
    ]
    if loads:
        rows.append(["1-min load average per scenario", ", ".join(loads)])
    return ["## Machine", "", *table(["", ""], rows)]


def profile_scenarios(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """profile name -> its scenarios (results files from before profiles: one "fast")."""
    if "profiles" in data:
        return {name: p["scenarios"] for name, p in data["profiles"].items()}
    return {"fast": data["scenarios"]}


def best_peer(values: dict[str, float | None], lowest: bool = False) -> tuple[str, float] | None:
    got = [(lib, v) for lib, v in values.items() if lib in PEERS and v is not None]
    if not got:
        return None
    return (min if lowest else max)(got, key=lambda kv: kv[1])


# One target row: (measured text, ratio text, met?) or None when not measured.
Cell = tuple[str, str, bool | None] | None


def vs_peer(job: float | None, peers: dict[str, float | None], need: float, unit: str) -> Cell:
    peer = best_peer(peers)
    if job is None or peer is None:
        return None
    r = job / peer[1]
    return f"{num(job)} vs {peer[0]} {num(peer[1])} {unit}", f"{r:.2f}x", r >= need


def target_rows(sc: dict[str, Any]) -> list[tuple[str, Cell]]:
    """Issue 11's targets, evaluated on one profile's scenarios (a failed scenario's rows
    read "n/a")."""
    failed = {k for k, v in sc.items() if "error" in v}
    sc = {k: v for k, v in sc.items() if k not in failed}
    rows: list[tuple[str, Cell]] = []
    sp = spawn_summary(sc["spawn"]) if "spawn" in sc else {}
    for mode, need in (("single", SINGLE_SPAWN_VS_PEER), ("bulk", BULK_SPAWN_VS_PEER)):
        cell = vs_peer(
            sp.get("job", {}).get(mode),
            {lib: m.get(mode) for lib, m in sp.items()},
            need,
            "jobs/s",
        )
        rows.append((f"{mode} spawn >= {need}x best peer", cell))
    lat = latency_summary(sc["latency"]) if "latency" in sc else {}
    job_lat = lat.get("job", {})
    peer50 = best_peer({lib: v["p50"] for lib, v in lat.items()}, lowest=True)
    p50 = job_lat.get("p50")
    cell = None
    if p50 is not None:
        ref = f" vs {peer50[0]} {num(peer50[1], 2)} ms" if peer50 else ""
        ok = p50 <= LATENCY_P50_MS and (peer50 is None or p50 <= peer50[1])
        cell = (f"{num(p50, 2)} ms{ref}", ratio(p50, peer50[1]) if peer50 else "", ok)
    rows.append((f"pickup latency p50 <= {LATENCY_P50_MS:g} ms and <= best peer's p50", cell))
    p99 = job_lat.get("p99")
    cell = None if p99 is None else (f"{num(p99, 2)} ms", "", p99 <= LATENCY_P99_MS)
    rows.append((f"pickup latency p99 <= {LATENCY_P99_MS:g} ms", cell))
    if "process" in sc:
        summary = process_summary(sc["process"])
        sizes = sc["process"]["sizes"]
        for workers, need in ((1, PROCESS_1W_VS_PEER), (2, PROCESS_2W_VS_PEER)):
            for size in sizes:
                best = best_by_lib(summary, size, workers)
                cell = vs_peer(
                    best["job"][1] if "job" in best else None,
                    {lib: v[1] for lib, v in best.items()},
                    need,
                    "jobs/s",
                )
                rows.append(
                    (f"processing {size:,} jobs, {workers} worker(s) >= {need}x best peer", cell)
                )
        size = sizes[0]
        rates = {c: v["rate"] for (s_, w, lib, c), v in summary.items()
                 if s_ == size and w == 1 and lib == "job"}  # fmt: skip
        cell = None
        if rates:
            default = next((c for c in rates if c.startswith("default")), None)
            best_name = max(rates, key=lambda c: rates[c] or 0)
            if default is not None and rates[default] and rates[best_name]:
                r = rates[default] / rates[best_name]  # type: ignore[operator]
                cell = (
                    f"{num(rates[default])} vs {best_name} {num(rates[best_name])} jobs/s",
                    f"{r:.2f}x",
                    r >= 1 - DEFAULT_WITHIN,
                )
        rows.append(
            (
                f"job's default poller config within {DEFAULT_WITHIN:.0%} of its best"
                f" ({size:,} jobs, 1 worker)",
                cell,
            )
        )
    bl = sc.get("backlog")
    if bl is not None:
        small, big = bl["backlogs"]
        d = backlog_summary(bl).get("job", {})
        cell = None
        if d.get(small) and d.get(big):
            r = d[big] / d[small]  # type: ignore[operator]
            cell = (
                f"{num(d[big])} vs {num(d[small])} us/job",
                f"{r:.2f}x",
                r <= BACKLOG_MAX_RATIO,
            )
        rows.append(
            (f"per-job cost at {big:,} pending <= {BACKLOG_MAX_RATIO}x that at {small:,}", cell)
        )
        m = bl.get("memory1m")
        cell = None
        if m and m.get("rss_10pct_kb") and m.get("rss_end_kb"):
            r = m["rss_end_kb"] / m["rss_10pct_kb"]
            cell = (
                f"{num(m['rss_end_kb'] / 1024)} vs {num(m['rss_10pct_kb'] / 1024)} MiB",
                f"{r:.2f}x",
                r <= RSS_MAX_RATIO,
            )
        size_text = f"{m['size']:,}" if m else f"{big:,}"
        rows.append(
            (
                f"worker RSS at the end of draining {size_text} jobs <= {RSS_MAX_RATIO}x RSS"
                " at 10% of the drain",
                cell,
            )
        )
    sq = sc.get("sqlite", {} if "sqlite" in failed else None)
    if sq is not None:
        samples = sq.get("samples", {})
        for mode, what in (("process", "processing"), ("single", "single spawn"),
                           ("bulk", "bulk spawn")):  # fmt: skip
            a = med(samples.get("job", {}).get(mode, []))
            b = med(samples.get("huey", {}).get(mode, []))
            cell = None
            if a is not None and b is not None:
                cell = (f"{num(a)} vs huey {num(b)} jobs/s", f"{a / b:.2f}x", a >= b)
            rows.append((f"SQLite {what}: job >= huey", cell))
    return rows


def targets_section(data: dict[str, Any]) -> list[str]:
    by_profile = {name: target_rows(sc) for name, sc in profile_scenarios(data).items()}
    if not by_profile:
        return []
    names = list(by_profile)
    labels: list[str] = []
    for rows in by_profile.values():
        labels += [label for label, _ in rows if label not in labels]
    head = ["target"]
    for name in names:
        head += [f"{name}: measured (job vs best peer)", "ratio", "verdict"]
    out_rows = []
    for label in labels:
        row = [label]
        for name in names:
            cell = dict(by_profile[name]).get(label)
            row += ["-", "", "n/a"] if cell is None else [cell[0], cell[1], verdict(cell[2])]
        out_rows.append(row)
    counts = []
    for name in names:
        cells = [c for _, c in by_profile[name] if c is not None]
        met = sum(1 for c in cells if c[2])
        counts.append(f"{name}: {met} of {len(cells)} measured targets met")
    return [
        "## Targets (issue 11)",
        "",
        "Each target compares `job` with the best peer of this run (highest rate, or lowest"
        f" latency, over {', '.join(PEERS)}, each in its best measured configuration). The"
        " durable profile runs fsync, synchronous_commit and full_page_writes on, and only the"
        " spawn, processing and latency scenarios (see bench/README.md). RSS flatness uses the"
        " ratio RSS at the end of the drain / RSS at 10% of it. " + "; ".join(counts) + ".",
        "",
        *table(head, out_rows),
    ]


def spawn_section(sc: dict[str, Any]) -> list[str]:
    sp = spawn_summary(sc)
    rows = []
    for lib, modes in sp.items():
        row = [lib]
        for mode in ("single", "bulk"):
            row.append(num(modes.get(mode)))
            row.append(ratio(sp.get("job", {}).get(mode), modes.get(mode)) if lib != "job" else "")
        rows.append(row)
    runs = max(len(v) for m in sc["samples"].values() for v in m.values())
    return [
        "## 1. Spawn throughput",
        "",
        f"{sc['count']:,} jobs per measurement, median of {runs} runs; bulk = calls of"
        f" {sc['bulk_batch']:,} jobs. Ratio = job / that library.",
        "",
        *table(
            ["library", "one at a time (jobs/s)", "job ratio", "bulk (jobs/s)", "job ratio"],
            rows,
        ),
    ]


def process_section(sc: dict[str, Any]) -> list[str]:
    summary = process_summary(sc)
    out = [
        "## 2. Processing throughput",
        "",
        "Pre-queued no-op jobs drained by 1 or 2 worker processes, from the moment the workers"
        " are released (after start-up) until the database shows every job done. CPU columns:"
        " CPU time of the worker process(es) and of all PostgreSQL server processes during the"
        " drain, per job (less sensitive to the machine's noise than jobs/s).",
        "",
    ]
    for size in sc["sizes"]:
        rows = []
        for (s, w, lib, config), v in sorted(summary.items(), key=lambda kv: kv[0][:3]):
            if s != size:
                continue
            rows.append(
                [
                    lib,
                    config,
                    str(w),
                    num(v["rate"]),
                    f"{num(v['min'])}-{num(v['max'])}",
                    str(v["runs"]),
                    num(v["worker_cpu"]),
                    num(v["pg_cpu"]),
                    num(v["peak_rss"]),
                ]
            )
        out += [f"### {size:,} jobs", ""]
        out += table(
            [
                "library",
                "configuration",
                "workers",
                "jobs/s (median)",
                "range",
                "runs",
                "worker CPU us/job",
                "PG CPU us/job",
                "peak RSS MiB",
            ],
            rows,
        )
        ratio_rows = []
        for workers in (1, 2):
            best = best_by_lib(summary, size, workers)
            if "job" not in best:
                continue
            ratio_rows.append(
                [
                    str(workers),
                    f"{best['job'][0]}: {num(best['job'][1])}",
                    *(
                        f"{best[p][0]}: {num(best[p][1])} ({ratio(best['job'][1], best[p][1])})"
                        if p in best
                        else "-"
                        for p in PEERS
                    ),
                ]
            )
        if ratio_rows:
            out += ["Best configuration of each library (job ratio in parentheses):", ""]
            out += table(["workers", "job", *PEERS], ratio_rows)
    return out


def latency_section(sc: dict[str, Any]) -> list[str]:
    lat = latency_summary(sc)
    job = lat.get("job", {})
    rows = [
        [
            lib,
            num(v["p50"], 2),
            ratio(job.get("p50"), v["p50"]) if lib != "job" else "",
            num(v["p99"], 2),
            ratio(job.get("p99"), v["p99"]) if lib != "job" else "",
            num(v["mean"], 2),
            num(v["max"], 1),
            f"{v['samples']} ({v['runs']} runs)",
        ]
        for lib, v in lat.items()
    ]
    return [
        "## 3. Pickup latency",
        "",
        "An idle worker (each library's default settings); one job spawned at a time, the next"
        f" {sc.get('gap_ms', 20):g} ms after the previous one started. Latency = the runner's"
        " first line"
        " (`time.time()` in the worker) minus the moment the spawn call returned"
        " (`time.time()` in the producer, another process). p50/p99 per run, median over runs."
        f" Up to {sc['samples_per_run']} samples per run after {sc['warmup']} warm-up ones,"
        f" fewer where a library is too slow for the time cap ({sc.get('cap_seconds', 40):g} s per"
        " run). Ratio = job / that library"
        " (lower is better).",
        "",
        *table(
            ["library", "p50 ms", "job ratio", "p99 ms", "job ratio", "mean ms", "max ms", "n"],
            rows,
        ),
    ]


def backlog_section(sc: dict[str, Any]) -> list[str]:
    bl = backlog_summary(sc)
    small, big = sc["backlogs"]
    rows = []
    for lib, d in bl.items():
        a, b = d.get(small), d.get(big)
        rows.append(
            [
                lib,
                f"{sc['windows'][lib]:,}",
                num(a),
                num(b),
                ratio(b, a),
            ]
        )
    return [
        "## 4. Backlog scaling",
        "",
        f"Time per job to drain the first jobs (claim order) of a queue holding {small:,} or"
        f" {big:,} pending jobs, one worker in its best configuration. The queues are filled"
        " through each library's bulk API once, VACUUM ANALYZEd, and copied for every run."
        + (f" Not run (budget): {', '.join(sc['skipped'])}." if sc.get("skipped") else ""),
        "",
        *table(
            ["library", "jobs drained", f"us/job at {small:,}", f"us/job at {big:,}", "ratio"],
            rows,
        ),
        *memory1m_section(sc.get("memory1m")),
    ]


def memory1m_section(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return []
    mib = lambda kb: num(kb / 1024, 1) if kb else "-"  # noqa: E731
    curve = m["curve"]
    steps = []
    for tenth in range(11):
        hit = next((c for c in curve if c[2] >= tenth / 10 * m["size"]), None)
        if hit is not None:
            steps.append([f"{tenth * 10}%", num(hit[0], 1), mib(hit[1])])
    ratio_end = m["rss_end_kb"] / m["rss_10pct_kb"] if m.get("rss_10pct_kb") else None
    return [
        f"### Worker RSS while draining {m['size']:,} jobs (`memory1m`)",
        "",
        f"One `job` worker ({m['config']}) drains the whole {m['size']:,}-job queue once"
        f" ({num(m['rate'])} jobs/s, {num(m['elapsed'])} s); the orchestrator samples its RSS"
        f" (psutil) about every second, {len(curve)} samples. RSS when ready"
        f" {mib(m['ready_rss_kb'])} MiB, at 10% of the drain {mib(m['rss_10pct_kb'])} MiB, at 50%"
        f" {mib(m.get('rss_50pct_kb'))} MiB, at the end {mib(m['rss_end_kb'])} MiB (end / 10% ="
        f" {num(ratio_end, 2)}x), peak (maxrss) {mib(m['peak_rss_kb'])} MiB. The whole curve is"
        " in the results JSON (`memory1m.curve`: seconds, RSS KiB, jobs done).",
        "",
        *table(["jobs done", "seconds", "RSS MiB"], steps),
    ]


def sqlite_section(sc: dict[str, Any]) -> list[str]:
    samples = sc.get("samples", {})
    job = {m: med(v) for m, v in samples.get("job", {}).items()}
    rows = []
    for lib, modes in samples.items():
        row = [lib]
        for mode in ("single", "bulk", "process"):
            v = med(modes.get(mode, []))
            row += [num(v), ratio(job.get(mode), v) if lib != "job" else ""]
        row.append(str(max((len(v) for v in modes.values()), default=0)))
        rows.append(row)
    notes = sc.get("notes") or {}
    return [
        "## SQLite: job vs huey",
        "",
        f"From `{sc.get('script', 'bench/sqlite_peers.py')}` (its own setup; medians of its"
        " runs). Ratio = job / that library.",
        "",
        *table(
            [
                "library",
                "single spawn jobs/s",
                "job ratio",
                "bulk spawn jobs/s",
                "job ratio",
                "processing jobs/s",
                "job ratio",
                "runs",
            ],
            rows,
        ),
        *([f"- {k}: {v}" for k, v in notes.items()] + [""] if notes else []),
    ]


def memory_section(sc: dict[str, Any]) -> list[str]:
    by_lib: dict[str, list[dict[str, Any]]] = {}
    for r in sc["results"]:
        by_lib.setdefault(r["lib"], []).append(r)
    job_peak = med(r["peak_rss_kb"] for r in by_lib.get("job", []))
    rows = []
    for lib, rs in by_lib.items():
        peak = med(r["peak_rss_kb"] for r in rs)
        rows.append(
            [
                lib,
                rs[0]["config"],
                f"{rs[0].get('size', sc['size']):,}",
                num(med(r["ready_rss_kb"] for r in rs) / 1024),  # type: ignore[operator]
                num(peak / 1024),  # type: ignore[operator]
                ratio(job_peak, peak) if lib != "job" else "",
                str(len(rs)),
            ]
        )
    return [
        "## 5. Memory",
        "",
        f"Peak RSS (`getrusage` maxrss) of one worker process draining {sc['size']:,} jobs in its"
        " best configuration, and its RSS when ready (libraries imported, connected) just"
        " before.",
        "",
        *table(
            ["library", "configuration", "jobs", "ready MiB", "peak MiB", "job ratio", "runs"],
            rows,
        ),
    ]


def profile_section(sc: dict[str, Any]) -> list[str]:
    if sc.get("error"):
        return ["## Profile of a `job` worker", "", f"Not taken: {sc['error']}", ""]
    out = [
        "## Profile of a `job` worker",
        "",
        f"py-spy ({sc['rate_hz']} Hz) on one worker ({sc['config']}) draining {sc['size']:,}"
        f" jobs: {sc['samples']:,} samples on the event loop. Raw stacks:"
        f" `{sc['raw']}` (open with speedscope or flamegraph.pl).",
        "",
        "Inclusive share of the event loop's busy samples:",
        "",
        *table(["share", "where"], [[f"{p:.1f}%", name] for name, p in sc["groups"]]),
        "Top frames by own time:",
        "",
        *table(["share", "frame"], [[f"{p:.1f}%", f"`{name}`"] for name, p in sc["top_self"]]),
    ]
    return out


def settings_section(data: dict[str, Any]) -> list[str]:
    fast = profile_scenarios(data).get("fast", {})
    best = fast.get("process", {}).get("best", {})  # absent if it failed
    rows = []
    for lib, cfgs in data["worker_configs"].items():
        if lib not in data["libs"]:
            continue
        for cfg in cfgs:
            opts = ", ".join(f"{k}={v}" for k, v in cfg["opts"].items())
            mark = "best in this run" if best.get(lib) == cfg["name"] else ""
            if not best and cfg.get("fallback"):
                mark = "used as best (processing not measured)"
            rows.append([lib, cfg["name"], opts, mark])
    return [
        "## Worker settings",
        "",
        "The best configuration of each library (highest median at the smallest processing size,"
        " one worker) is used for the larger size, backlog, memory and profile scenarios.",
        "",
        *table(["library", "configuration", "options (bench/agent.py)", ""], rows),
    ]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "spawn": spawn_section,
    "process": process_section,
    "latency": latency_section,
    "backlog": backlog_section,
    "memory": memory_section,
    "profile": profile_section,
    "sqlite": sqlite_section,
}


def render(data: dict[str, Any], analysis: str | None) -> str:
    minutes = data.get("seconds", 0) / 60
    lines = [
        "# Benchmark: job vs pgqueuer (psycopg, asyncpg) vs oban vs procrastinate",
        "",
        f"Generated by `bench/run.sh` (see bench/README.md) on {data['started']} in"
        f" {minutes:.1f} minutes; {data['runs']} runs per figure"
        f"{' (QUICK smoke-test sizes: not representative)' if data.get('quick') else ''}."
        " All figures are medians over runs; ratios compare libraries within this one run."
        " The machine is shared and noisy: compare ratios, not absolute numbers.",
        "",
    ]
    lines += targets_section(data)
    lines += [START, analysis.strip() if analysis else "(no analysis written yet)", END, ""]
    for profile, scenarios in profile_scenarios(data).items():
        part: list[str] = []
        for name, section in SECTIONS.items():
            sc = scenarios.get(name)
            if sc is not None and "error" in sc:
                part += [f"## Scenario `{name}`: FAILED", "", "```", sc["error"], "```", ""]
            elif sc is not None:
                part += section(sc)
        if profile != "fast":
            settings = data.get("profiles", {}).get(profile, {}).get("postgres_settings", {})
            head = ", ".join(f"{k}={v}" for k, v in settings.items())
            part = [
                f"# Profile `{profile}`",
                "",
                f"A second throwaway server with {head}. Each library runs its best"
                " configuration of the fast profile (and `job` also its default).",
                "",
                *(f"## {profile}: {x[3:]}" if x.startswith("## ") else x for x in part),
            ]
        lines += part
    lines += settings_section(data)
    lines += machine_section(data)
    return "\n".join(lines).rstrip() + "\n"


def existing_analysis(path: Path) -> str | None:
    if not path.exists():
        return None
    text = path.read_text()
    if START in text and END in text:
        return text.split(START, 1)[1].split(END, 1)[0]
    return None


def write(data: dict[str, Any], path: Path) -> None:
    path.write_text(render(data, existing_analysis(path)))


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results" / "latest.json"
    write(json.loads(source.read_text()), BENCH / "RESULTS.md")
    print("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main()
