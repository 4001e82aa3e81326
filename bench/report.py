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
PEERS = ("pgqueuer", "procrastinate")

# Targets for `job` (from the issue "Prove it").
PROCESS_VS_PGQUEUER = 1.5
PROCESS_VS_PROCRASTINATE = 5.0  # "far ahead"
LATENCY_P50_MS = 3.0
LATENCY_P99_MS = 15.0
BACKLOG_MAX_RATIO = 1.5


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
        ["PostgreSQL settings", ", ".join(f"{k}={x}" for k, x in m["postgres_settings"].items())],
        ["Server", m["server"]],
        ["Python", m["python"]],
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
        ["pgqueuer", v.get("pgqueuer", "-")],
        ["procrastinate", v.get("procrastinate", "-")],
        ["psycopg / psycopg-pool", f"{v.get('psycopg', '-')} / {v.get('psycopg-pool', '-')}"],
    ]
    loads = [
        f"{name} {sc['loadavg_before_after'][0][0]:.1f}->{sc['loadavg_before_after'][1][0]:.1f}"
        for name, sc in data["scenarios"].items()
        if "loadavg_before_after" in sc
    ]
    if loads:
        rows.append(["1-min load average per scenario", ", ".join(loads)])
    return ["## Machine", "", *table(["", ""], rows)]


def targets_section(data: dict[str, Any]) -> list[str]:
    sc = {k: v for k, v in data["scenarios"].items() if "error" not in v}
    rows: list[list[str]] = []
    if "process" in sc:
        summary = process_summary(sc["process"])
        for size in sc["process"]["sizes"]:
            for workers in (1, 2):
                best = best_by_lib(summary, size, workers)
                if "job" not in best:
                    continue
                job_rate = best["job"][1]
                for peer, need in (
                    ("pgqueuer", PROCESS_VS_PGQUEUER),
                    ("procrastinate", PROCESS_VS_PROCRASTINATE),
                ):
                    if peer not in best:
                        continue
                    r = job_rate / best[peer][1]
                    rows.append(
                        [
                            f"processing {size:,} jobs, {workers} worker(s):"
                            f" job >= {need}x {peer} (best configs)",
                            f"{num(job_rate)} vs {num(best[peer][1])} jobs/s",
                            f"{r:.2f}x",
                            verdict(r >= need),
                        ]
                    )
    if "spawn" in sc:
        sp = spawn_summary(sc["spawn"])
        for mode, peer in (("bulk", "pgqueuer"), ("single", "procrastinate")):
            a = sp.get("job", {}).get(mode)
            b = sp.get(peer, {}).get(mode)
            if a is not None and b is not None:
                rows.append(
                    [
                        f"{mode} spawn: job >= {peer}",
                        f"{num(a)} vs {num(b)} jobs/s",
                        f"{a / b:.2f}x",
                        verdict(a >= b),
                    ]
                )
    if "latency" in sc:
        lat = latency_summary(sc["latency"]).get("job")
        if lat:
            rows.append(
                [
                    f"pickup latency p50 <= {LATENCY_P50_MS:g} ms",
                    f"{num(lat['p50'], 2)} ms",
                    "",
                    verdict(lat["p50"] is not None and lat["p50"] <= LATENCY_P50_MS),
                ]
            )
            rows.append(
                [
                    f"pickup latency p99 <= {LATENCY_P99_MS:g} ms",
                    f"{num(lat['p99'], 2)} ms",
                    "",
                    verdict(lat["p99"] is not None and lat["p99"] <= LATENCY_P99_MS),
                ]
            )
    if "backlog" in sc:
        bl = backlog_summary(sc["backlog"]).get("job")
        small, big = sc["backlog"]["backlogs"]
        if bl and bl.get(small) and bl.get(big):
            r = bl[big] / bl[small]  # type: ignore[operator]
            rows.append(
                [
                    f"per-job cost at {big:,} pending <= {BACKLOG_MAX_RATIO}x that at {small:,}",
                    f"{num(bl[big])} vs {num(bl[small])} us/job",
                    f"{r:.2f}x",
                    verdict(r <= BACKLOG_MAX_RATIO),
                ]
            )
    if not rows:
        return []
    return [
        "## Targets",
        "",
        *table(["target", "measured (job vs reference)", "ratio", "verdict"], rows),
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
        " through each library's bulk API once, VACUUM ANALYZEd, and copied for every run.",
        "",
        *table(
            ["library", "jobs drained", f"us/job at {small:,}", f"us/job at {big:,}", "ratio"],
            rows,
        ),
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
    best = data["scenarios"].get("process", {}).get("best", {})  # absent if it failed
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
}


def render(data: dict[str, Any], analysis: str | None) -> str:
    minutes = data.get("seconds", 0) / 60
    lines = [
        "# Benchmark: job vs pgqueuer vs procrastinate",
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
    for name, section in SECTIONS.items():
        sc = data["scenarios"].get(name)
        if sc is not None and "error" in sc:
            lines += [f"## Scenario `{name}`: FAILED", "", "```", sc["error"], "```", ""]
        elif sc is not None:
            lines += section(sc)
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
