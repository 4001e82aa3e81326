"""Benchmark `job` against procrastinate and pgqueuer: one command, see bench/README.md.

    bench/run.sh                      # the whole thing (creates bench/.venv first)
    bench/.venv/bin/python bench/run.py --runs 3 --scenarios spawn,latency

Starts one throwaway PostgreSQL server for the whole run (or uses ``JOB_BENCH_DSN``, which
must be allowed to create databases), installs each library's schema into a template
database, and gives every single measurement its own fresh copy of that template. The agents
run a copy of src/job taken at the start, so editing src/ during a run changes nothing. All
library code runs in ``bench/agent.py`` subprocesses; this process only creates databases,
sends commands, watches the database and keeps the clock. Results go to
``bench/results/<timestamp>.json`` (and ``latest.json``); ``bench/report.py`` turns them
into ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import psycopg
import report
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
AGENT = BENCH / "agent.py"
RESULTS = BENCH / "results"
LIBS = ("job", "pgqueuer", "procrastinate")
JOB_TYPE = "bench_noop"
PREFILL_CHUNK = 10_000  # jobs per bulk call when queueing jobs before a drain

# -- settings per library ------------------------------------------------------------------
# Worker configurations for the processing scenario; the first of each library is its default.
# Each library's "best" configuration, used by the other worker scenarios (100,000 jobs,
# backlog, memory, profile), is the one with the highest median throughput at 10,000 jobs with
# one worker in this run; "fallback" marks the one used when that has not been measured.

WORKER_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "job": [
        {"name": "default (max 50 / min 30)", "opts": {"max_jobs": 50, "min_jobs": 30}},
        {
            "name": "max 500 / min 250",
            "opts": {"max_jobs": 500, "min_jobs": 250},
            "fallback": True,
        },
    ],
    "pgqueuer": [
        {"name": "default (1 manager, batch 10)", "opts": {"managers": 1, "batch_size": 10}},
        {"name": "1 manager, batch 100", "opts": {"managers": 1, "batch_size": 100}},
        {
            "name": "2 managers, batch 50",
            "opts": {"managers": 2, "batch_size": 50},
            "fallback": True,
        },
        {"name": "5 managers, batch 50", "opts": {"managers": 5, "batch_size": 50}},
        {
            "name": "5 managers, batch 10 (its benchmark's)",
            "opts": {"managers": 5, "batch_size": 10},
        },
    ],
    "procrastinate": [
        {"name": "default (concurrency 1)", "opts": {"concurrency": 1}, "fallback": True},
        {"name": "concurrency 30, pool 35", "opts": {"concurrency": 30, "pool": 35}},
    ],
}

# Budget (a full run in about 25 minutes on 2 cores): procrastinate, about ten times slower
# than the others, drains 10,000 jobs once per configuration and worker count (not `--runs`
# times) and skips 100,000 (its memory figure then comes from 10,000 jobs).
SINGLE_RUN_LIBS = {"procrastinate"}
SKIP_100K_LIBS = {"procrastinate"}
BEST_SIZE = 10_000


def best_config(ctx: Ctx, lib: str) -> dict[str, Any]:
    """The configuration with the best median rate at 10,000 jobs, one worker, in this run."""
    rates: dict[str, list[float]] = {}
    for r in ctx.data.get("process", ctx.process_partial).get("results", []):
        if r["lib"] == lib and r["workers"] == 1 and r["size"] == (ctx.sizes_run or [0])[0]:
            rates.setdefault(r["config"], []).append(r["rate"])
    if rates:
        name = max(rates, key=lambda c: median(rates[c]))
        return next(c for c in WORKER_CONFIGS[lib] if c["name"] == name)
    return next((c for c in WORKER_CONFIGS[lib] if c.get("fallback")), WORKER_CONFIGS[lib][0])


# How many jobs are still to be done, among the first `window` in the library's claim order.
# Each query touches only the rows of that window (through an index), so polling it stays
# cheap even with a million rows queued behind.
WINDOW_BOUND_SQL = {
    "job": (
        "SELECT execute_at, id FROM job_executions WHERE job_type = %(t)s AND state = 'pending'"
        " ORDER BY execute_at, id OFFSET %(k)s LIMIT 1"
    ),
    "pgqueuer": (
        "SELECT id FROM pgqueuer WHERE status = 'queued' ORDER BY priority DESC, id"
        " OFFSET %(k)s LIMIT 1"
    ),
    "procrastinate": (
        "SELECT id FROM procrastinate_jobs WHERE status = 'todo' ORDER BY priority DESC, id"
        " OFFSET %(k)s LIMIT 1"
    ),
}
REMAINING_SQL = {
    "job": (
        "SELECT (SELECT count(*) FROM job_executions WHERE job_type = %(t)s AND state = 'pending'"
        "        AND (execute_at, id) <= (%(b0)s, %(b1)s))"
        "     + (SELECT count(*) FROM job_executions WHERE state = 'running'"
        "        AND (execute_at, id) <= (%(b0)s, %(b1)s))"
    ),
    "pgqueuer": "SELECT count(*) FROM pgqueuer WHERE id <= %(b0)s",
    "procrastinate": (
        "SELECT count(*) FROM procrastinate_jobs"
        " WHERE status = ANY (ARRAY['todo', 'doing']::procrastinate_job_status[])"
        " AND id <= %(b0)s"
    ),
}

# -- subprocesses ----------------------------------------------------------------------------


class AgentError(RuntimeError):
    pass


# Environment of the agents: PYTHONPATH points at a copy of src/job taken when the run starts,
# so that edits to src/ during a run (the install is editable) never mix two versions.
AGENT_ENV: dict[str, str] = {}


class Agent:
    """One ``agent.py`` subprocess, spoken to line by line."""

    def __init__(self, label: str, lib: str, command: str, dsn: str, opts: dict[str, Any]):
        self.label = label
        self.argv = [sys.executable, str(AGENT), lib, command, dsn, json.dumps(opts)]
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.log_path = RESULTS / "logs" / f"{label}.log"

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=str(BENCH),
                env=AGENT_ENV or None,
                limit=1 << 20,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            await self.lines.put(line.decode().strip())
        await self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())

    async def expect(self, word: str, timeout: float = 60.0) -> list[str]:
        """The next line starting with ``word``, split on whitespace (first part dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(self.lines.get(), max(remaining, 0.001))
            except TimeoutError:
                raise AgentError(f"{self.label}: no {word!r} within {timeout}s") from None
            if line is None:
                tail = self.log_path.read_text()[-3000:]
                raise AgentError(f"{self.label} exited before {word!r}; its stderr:\n{tail}")
            head, _, rest = line.partition(" ")
            if head == word:
                return rest.split(" ") if rest else []

    async def done(self, timeout: float = 120.0) -> dict[str, Any]:
        parts = await self.expect("DONE", timeout)
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), timeout)
        return json.loads(" ".join(parts) or "{}")

    async def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """Ask for the final report; the process is killed on leaving ``agents()``."""
        self.send("STOP")
        parts = await self.expect("DONE", timeout)
        return json.loads(" ".join(parts) or "{}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


@contextlib.asynccontextmanager
async def agents(*items: Agent) -> Any:
    try:
        for a in items:
            await a.start()
        yield items
    finally:
        for a in items:
            await a.kill()


# -- the database server -------------------------------------------------------------------


class Server:
    """The PostgreSQL server of the run: a LocalPostgres, or JOB_BENCH_DSN."""

    def __init__(self, dsn: str | None) -> None:
        self.local: Any = None
        if dsn is None:
            from job.testing._localpg import LocalPostgres

            self.local = LocalPostgres(max_connections=200).start()
            dsn = self.local.dsn()
        self.base = conninfo_to_dict(dsn)
        self.admin = psycopg.connect(dsn, autocommit=True)
        self.version_num = int(self.scalar("SHOW server_version_num"))
        self.counter = 0

    def dsn(self, dbname: str) -> str:
        return make_conninfo(**{**self.base, "dbname": dbname})

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time (user + system) of each process of our own server, by pid; empty when
        the server is not ours (JOB_BENCH_DSN) and so cannot be watched."""
        if self.local is None:
            return {}
        pid_file = self.local.datadir / "postmaster.pid"
        try:
            postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
            procs = [postmaster, *postmaster.children()]
        except (OSError, ValueError, psutil.Error):
            return {}
        return cpu_by_pid(procs)

    def scalar(self, query: str) -> Any:
        row = self.admin.execute(query).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]

    def create(self, name: str, template: str | None = None) -> None:
        self.drop(name)
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            if self.version_num >= 150000:  # a plain file copy: fast for big templates
                stmt += sql.SQL(" STRATEGY FILE_COPY")
        self.admin.execute(stmt)

    def drop(self, name: str) -> None:
        self.admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    @contextlib.contextmanager
    def fresh(self, template: str) -> Iterator[str]:
        """A new database copied from ``template``; dropped afterwards."""
        self.counter += 1
        name = f"m_{template}_{self.counter}"
        self.create(name, template)
        try:
            yield self.dsn(name)
        finally:
            self.drop(name)

    def close(self) -> None:
        self.admin.close()
        if self.local is not None:
            self.local.stop()


async def settle(dsn: str) -> None:
    """VACUUM ANALYZE and CHECKPOINT: every measurement starts from the same clean state."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE")
        with contextlib.suppress(psycopg.Error):  # CHECKPOINT needs privileges
            await conn.execute("CHECKPOINT")


# -- measurements --------------------------------------------------------------------------


@dataclass
class Ctx:
    server: Server
    runs: int
    libs: list[str]
    quick: bool
    sizes: list[int] | None
    workers: list[int]
    log: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    process_partial: dict[str, Any] = field(default_factory=dict)
    sizes_run: list[int] | None = None

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", flush=True)
        self.log.append(text)


async def run_agent(label: str, lib: str, command: str, dsn: str, opts: dict[str, Any]) -> Any:
    agent = Agent(label, lib, command, dsn, opts)
    async with agents(agent):
        return await agent.done(timeout=1800)


async def prefill(lib: str, dsn: str, count: int) -> float:
    """Queue ``count`` no-op jobs through the library's own bulk API (calls of PREFILL_CHUNK
    jobs), then settle the database; returns the seconds the queueing took."""
    opts = {"count": count, "chunk": PREFILL_CHUNK}
    result = await run_agent(f"{lib}-prefill-{count}", lib, "prefill", dsn, opts)
    await settle(dsn)
    return float(result["elapsed"])


async def window_bound(lib: str, dsn: str, window: int) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(WINDOW_BOUND_SQL[lib], {"t": JOB_TYPE, "k": window - 1})
        row = await cur.fetchone()
    if row is None:
        raise RuntimeError(f"{lib}: fewer than {window} jobs queued")
    return {"t": JOB_TYPE, "b0": row[0], "b1": row[1] if len(row) > 1 else None}


async def drain(
    server: Server,
    lib: str,
    dsn: str,
    opts: dict[str, Any],
    workers: int,
    window: int,
    label: str,
    wrap: list[str] | None = None,
) -> dict[str, Any]:
    """Start ``workers`` worker processes on a pre-filled database, release them together and
    wait until the first ``window`` jobs (claim order) are done, watching the database.

    ``wrap`` prefixes the workers' command line (a profiler); they are then let exit."""
    params = await window_bound(lib, dsn, window)
    crew = [Agent(f"{label}-w{i}", lib, "worker", dsn, opts) for i in range(workers)]
    for a in crew:
        a.argv = [*(wrap or []), *a.argv]
    async with agents(*crew), await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        for a in crew:
            await a.expect("READY", timeout=120)
        procs = [psutil.Process(a.proc.pid) for a in crew if a.proc is not None]
        worker_cpu0, pg_cpu0 = cpu_by_pid(procs), server.cpu_seconds()
        for a in crew:
            a.send("GO")
        t0 = time.time()
        remaining, t_last, r_last, sleep = window, t0, window, 0.05
        while True:
            await asyncio.sleep(sleep)
            if not all(a.alive() for a in crew):
                await asyncio.sleep(0.2)
                dead = [a for a in crew if not a.alive()]
                tail = dead[0].log_path.read_text()[-3000:] if dead else ""
                raise AgentError(f"{label}: a worker died; its stderr:\n{tail}")
            t_query = time.time()
            cur = await db.execute(REMAINING_SQL[lib], params)
            row = await cur.fetchone()
            remaining = int(row[0]) if row else 0
            if remaining == 0:
                t_end = t_query
                worker_cpu = cpu_delta(worker_cpu0, cpu_by_pid(procs))
                pg_cpu = cpu_delta(pg_cpu0, server.cpu_seconds()) if pg_cpu0 else None
                break
            if t_query - t0 > 1800:
                raise AgentError(f"{label}: {remaining} jobs still not done after 30 minutes")
            # Poll more often as the end nears: about 4 polls over the expected rest.
            rate = (r_last - remaining) / max(t_query - t_last, 1e-3)
            t_last, r_last = t_query, remaining
            expected = remaining / rate if rate > 0 else 1.0
            sleep = min(max(expected / 4, 0.01), 0.25)
        stats = [await a.stop() for a in crew]
        if wrap:
            for a in crew:
                assert a.proc is not None
                await asyncio.wait_for(a.proc.wait(), 120)
    elapsed = t_end - t0
    return {
        "jobs": window,
        "elapsed": elapsed,
        "rate": window / elapsed,
        "worker_cpu_us_per_job": worker_cpu / window * 1e6,
        "pg_cpu_us_per_job": None if pg_cpu is None else pg_cpu / window * 1e6,
        "peak_rss_kb": [s.get("peak_rss_kb") for s in stats],
        "ready_rss_kb": [s.get("ready_rss_kb") for s in stats],
    }


def cpu_by_pid(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots; processes born in between count from zero."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# -- scenarios -----------------------------------------------------------------------------


async def scenario_spawn(ctx: Ctx) -> dict[str, Any]:
    """1. Spawn throughput: 10,000 jobs one awaited call at a time, and in bulk."""
    count = 2000 if ctx.quick else 10_000
    out: dict[str, Any] = {"count": count, "bulk_batch": 1000, "samples": {}}
    for run in range(ctx.runs):
        for lib in ctx.libs:
            for mode in ("single", "bulk"):
                with ctx.server.fresh(f"tpl_{lib}") as dsn:
                    opts = {"count": count, "mode": mode, "batch": 1000}
                    agent = Agent(f"{lib}-spawn-{mode}-{run}", lib, "spawn", dsn, opts)
                    async with agents(agent):
                        await agent.expect("READY")
                        agent.send("GO")
                        result = await agent.done(timeout=900)
                rate = count / result["elapsed"]
                out["samples"].setdefault(lib, {}).setdefault(mode, []).append(rate)
                ctx.say(f"spawn {mode:6} {lib:13} run {run + 1}: {rate:9.0f} jobs/s")
    return out


async def scenario_process(ctx: Ctx) -> dict[str, Any]:
    """2. Processing throughput: pre-queued no-op jobs drained by 1 and 2 worker processes.

    The smallest size runs every configuration; larger sizes only each library's best one."""
    sizes = ctx.sizes or ([2000] if ctx.quick else [BEST_SIZE, 100_000])
    out: dict[str, Any] = {"sizes": sizes, "results": [], "best": {}}
    ctx.process_partial, ctx.sizes_run = out, sizes
    for size in sizes:
        if size != sizes[0]:
            out["best"] = {lib: best_config(ctx, lib)["name"] for lib in ctx.libs}
        for run in range(ctx.runs):
            for lib in ctx.libs:
                if run > 0 and lib in SINGLE_RUN_LIBS and not ctx.quick:
                    continue
                if size >= 100_000 and lib in SKIP_100K_LIBS:
                    continue
                configs = WORKER_CONFIGS[lib] if size == sizes[0] else [best_config(ctx, lib)]
                for cfg in configs:
                    for workers in ctx.workers:
                        await process_case(ctx, out, lib, cfg, size, workers, run)
    out["best"] = {lib: best_config(ctx, lib)["name"] for lib in ctx.libs}
    return out


async def process_case(
    ctx: Ctx, out: dict[str, Any], lib: str, cfg: dict[str, Any], size: int, workers: int, run: int
) -> None:
    label = f"{lib}-process-{size}-{cfg_slug(cfg)}-x{workers}-{run}"
    with ctx.server.fresh(f"tpl_{lib}") as dsn:
        fill = await prefill(lib, dsn, size)
        res = await drain(ctx.server, lib, dsn, cfg["opts"], workers, size, label)
    res.update(
        lib=lib, config=cfg["name"], workers=workers, size=size, run=run, prefill_seconds=fill
    )
    out["results"].append(res)
    ctx.say(
        f"process {size:>6} {lib:13} {cfg['name'][:34]:34} x{workers}"
        f" run {run + 1}: {res['rate']:7.0f} jobs/s"
        f" (peak RSS {max(res['peak_rss_kb']) / 1024:.0f} MiB)"
    )


def cfg_slug(cfg: dict[str, Any]) -> str:
    return "-".join(f"{k}{v}" for k, v in sorted(cfg["opts"].items()))


# At most this long per library and run: pgqueuer's psycopg driver answers in about a second
# (see README.md), which would make 500 samples last 8 minutes.
LATENCY_SECONDS_CAP = 20.0
LATENCY_GAP = 0.015  # seconds between a job's start and the next spawn


async def scenario_latency(ctx: Ctx) -> dict[str, Any]:
    """3. Pickup latency: an idle worker, one job spawned at a time, spawn return -> start."""
    samples, warmup = (100, 10) if ctx.quick else (500, 20)
    out: dict[str, Any] = {
        "samples_per_run": samples,
        "warmup": warmup,
        "gap_ms": LATENCY_GAP * 1000,
        "cap_seconds": LATENCY_SECONDS_CAP,
        "runs": {},
    }
    for run in range(ctx.runs):
        for lib in ctx.libs:
            cfg = WORKER_CONFIGS[lib][0]  # the default configuration: latency is about idling
            opts = {**cfg["opts"], "latency": True}
            with ctx.server.fresh(f"tpl_{lib}") as dsn:
                worker = Agent(f"{lib}-latency-w-{run}", lib, "worker", dsn, opts)
                producer = Agent(f"{lib}-latency-p-{run}", lib, "producer", dsn, {})
                async with agents(worker, producer):
                    await worker.expect("READY")
                    await producer.expect("READY")
                    worker.send("GO")
                    await asyncio.sleep(1.0)  # let the worker reach its idle wait
                    lat: list[float] = []
                    deadline = time.monotonic() + LATENCY_SECONDS_CAP
                    for n in range(warmup + samples):
                        if time.monotonic() > deadline and len(lat) >= 20:
                            break  # a slow library: fewer samples (the count is recorded)
                        producer.send(f"SPAWN {n}")
                        committed = float((await producer.expect("C", 30))[1])
                        started = float((await worker.expect("S", 30))[1])
                        if n >= warmup:
                            lat.append((started - committed) * 1000)
                        await asyncio.sleep(LATENCY_GAP)  # idle again: outcome written
                    await producer.stop()
                    await worker.stop()
            out["runs"].setdefault(lib, []).append(lat)
            ctx.say(
                f"latency {lib:13} run {run + 1}: p50 {percentile(lat, 0.5):6.2f} ms,"
                f" p99 {percentile(lat, 0.99):6.2f} ms"
            )
    return out


# Jobs drained per backlog measurement; procrastinate (about 200 jobs/s here) drains fewer.
BACKLOG_WINDOW = {"procrastinate": 2000}


async def scenario_backlog(ctx: Ctx) -> dict[str, Any]:
    """4. Backlog scaling: drain the first 10,000 jobs with 10,000 vs 1,000,000 pending."""
    small, big = (2000, 50_000) if ctx.quick else (10_000, 1_000_000)
    backlogs = [small, big]
    windows = {lib: min(small, BACKLOG_WINDOW.get(lib, small)) for lib in ctx.libs}
    out: dict[str, Any] = {"windows": windows, "backlogs": backlogs, "results": [], "fill": {}}
    for lib in ctx.libs:
        for backlog in backlogs:
            tpl = f"tpl_{lib}_{backlog}"
            ctx.server.create(tpl, f"tpl_{lib}")
            t0 = time.perf_counter()
            await prefill(lib, ctx.server.dsn(tpl), backlog)
            out["fill"][f"{lib}/{backlog}"] = time.perf_counter() - t0
            ctx.say(f"backlog {lib}: filled {backlog} rows in {time.perf_counter() - t0:.1f}s")
    try:
        for run in range(ctx.runs):
            for lib in ctx.libs:
                cfg = best_config(ctx, lib)
                for backlog in backlogs:
                    label = f"{lib}-backlog-{backlog}-{run}"
                    window = windows[lib]
                    with ctx.server.fresh(f"tpl_{lib}_{backlog}") as dsn:
                        res = await drain(ctx.server, lib, dsn, cfg["opts"], 1, window, label)
                    res.update(lib=lib, config=cfg["name"], backlog=backlog, run=run)
                    res["per_job_us"] = res["elapsed"] / window * 1e6
                    out["results"].append(res)
                    ctx.say(
                        f"backlog {lib:13} {backlog:>8} pending run {run + 1}:"
                        f" {res['per_job_us']:7.0f} us/job ({res['rate']:.0f} jobs/s)"
                    )
    finally:
        for lib in ctx.libs:
            for backlog in backlogs:
                ctx.server.drop(f"tpl_{lib}_{backlog}")
    return out


async def scenario_memory(ctx: Ctx) -> dict[str, Any]:
    """5. Memory: peak RSS of one worker process draining 100,000 jobs at full concurrency.

    Taken from the processing scenario's single-worker runs of the best configuration when
    they exist, measured here (one run) otherwise. Libraries in SKIP_100K_LIBS drain 10,000."""
    size = 20_000 if ctx.quick else 100_000
    out: dict[str, Any] = {"size": size, "results": []}
    done = ctx.data.get("process", {}).get("results", [])
    for lib in ctx.libs:
        cfg = best_config(ctx, lib)
        lib_size = min(size, BEST_SIZE) if lib in SKIP_100K_LIBS else size
        found = [
            r
            for r in done
            if r["lib"] == lib and r["size"] == lib_size and r["workers"] == 1
            and r["config"] == cfg["name"]
        ]  # fmt: skip
        if not found:
            label = f"{lib}-memory-{lib_size}"
            with ctx.server.fresh(f"tpl_{lib}") as dsn:
                await prefill(lib, dsn, lib_size)
                res = await drain(ctx.server, lib, dsn, cfg["opts"], 1, lib_size, label)
            res.update(lib=lib, config=cfg["name"], workers=1, size=lib_size, run=0)
            found = [res]
        for r in found:
            out["results"].append(
                {
                    "lib": lib,
                    "config": r["config"],
                    "size": lib_size,
                    "peak_rss_kb": r["peak_rss_kb"][0],
                    "ready_rss_kb": r["ready_rss_kb"][0],
                    "run": r["run"],
                }
            )
        peaks = [r["peak_rss_kb"][0] / 1024 for r in found]
        ctx.say(f"memory {lib:13} peak RSS {median(peaks):.0f} MiB ({len(peaks)} runs)")
    return out


# Where a job worker's event loop spends its time: (label, regex on a stack's frames).
PROFILE_GROUPS = [
    ("claiming (Repository.claim, whole call)", r"Repository\.claim "),
    ("writing outcomes (Repository.apply_outcomes, whole call)", r"Repository\.apply_outcomes "),
    ("running jobs (Dispatcher._execute, without the outcome write)", r"Dispatcher\._execute "),
    ("starting a task per job (TaskGroup.start_soon)", r"TaskGroup\.start_soon "),
    ("psycopg: adapting parameters (PostgresQuery.dump)", r"PostgresQuery\.dump "),
    ("psycopg: pool checkout/return", r"psycopg_pool/"),
    ("opentelemetry (no SDK installed: no-op spans)", r"opentelemetry/|start_as_current_span"),
    ("pydantic (config validation / dump)", r"pydantic"),
    ("anyio Event objects", r"Event\.__new__ \(anyio"),
    ("idle: waiting for the database (selector)", r"select \(selectors"),
]
PROFILE_SECONDS_MIN_JOBS = 100_000


def analyse_profile(path: Path) -> dict[str, Any]:
    import re

    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any("_run_once" in f for f in frames):  # the event loop thread, not stdin's
            stacks.append((frames, int(count)))
    total = sum(n for _, n in stacks) or 1
    groups = []
    for label, pattern in PROFILE_GROUPS:
        rx = re.compile(pattern)
        if label.startswith("running jobs"):
            hit = sum(
                n
                for f, n in stacks
                if any(rx.search(x) for x in f) and not any("OutcomeWriter" in x for x in f)
            )
        else:
            hit = sum(n for f, n in stacks if any(rx.search(x) for x in f))
        groups.append((label, hit / total * 100))
    own: dict[str, int] = {}
    for frames, n in stacks:
        leaf = re.sub(r":\d+\)$", ")", frames[-1])
        own[leaf] = own.get(leaf, 0) + n
    top = sorted(own.items(), key=lambda kv: -kv[1])[:15]
    return {
        "samples": total,
        "groups": groups,
        "top_self": [(name, n / total * 100) for name, n in top],
    }


async def scenario_profile(ctx: Ctx) -> dict[str, Any]:
    """Where a `job` worker's time goes: py-spy on one worker draining 100,000 jobs."""
    size = 10_000 if ctx.quick else PROFILE_SECONDS_MIN_JOBS
    cfg = best_config(ctx, "job")
    py_spy = Path(sys.executable).parent / "py-spy"
    raw = RESULTS / f"profile-job-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    out: dict[str, Any] = {"size": size, "config": cfg["name"], "rate_hz": 200}
    out["raw"] = str(raw.relative_to(REPO))
    if "job" not in ctx.libs:
        return {**out, "error": "job not among --libs"}
    if not py_spy.exists():
        return {**out, "error": "py-spy is not installed in bench/.venv"}
    wrap = [str(py_spy), "record", "-r", "200", "-f", "raw", "-o", str(raw), "--"]
    with ctx.server.fresh("tpl_job") as dsn:
        await prefill("job", dsn, size)
        try:
            res = await drain(ctx.server, "job", dsn, cfg["opts"], 1, size, "job-profile", wrap)
        except AgentError as exc:
            return {**out, "error": f"py-spy failed: {str(exc)[:500]}"}
    if not raw.exists():
        return {**out, "error": "py-spy wrote no output (ptrace not permitted?)"}
    out.update(analyse_profile(raw), rate_under_profiler=res["rate"])
    top = ", ".join(f"{name} {p:.0f}%" for name, p in out["groups"][:3])
    ctx.say(f"profile job: {out['samples']} samples; {top}")
    return out


SCENARIOS = {
    "spawn": scenario_spawn,
    "process": scenario_process,
    "latency": scenario_latency,
    "backlog": scenario_backlog,
    "memory": scenario_memory,
    "profile": scenario_profile,
}


# -- machine description -------------------------------------------------------------------


def machine(server: Server) -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return "?"

    versions = {}
    for dist in ("job", "pgqueuer", "procrastinate", "psycopg", "psycopg-pool", "psycopg-binary"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "nproc": os.cpu_count(),
        "memory": first("/proc/meminfo", "MemTotal"),
        "cpu": first("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": server.scalar("SELECT version()"),
        "postgres_settings": {
            name: server.scalar(f"SHOW {name}")
            for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
        },
        "server": "LocalPostgres (throwaway)" if server.local else "JOB_BENCH_DSN",
        "versions": versions,
        "job_commit": job_commit(),
    }


def job_commit() -> str:
    """The commit of the `job` under test, with a mark if src/ has uncommitted changes."""

    def git(*argv: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "src", "pyproject.toml")
    return f"{head}{' + uncommitted src changes' if dirty else ''}"


# -- main ----------------------------------------------------------------------------------


async def install_templates(ctx: Ctx) -> None:
    for lib in ctx.libs:
        tpl = f"tpl_{lib}"
        ctx.server.create(tpl)
        await run_agent(f"{lib}-install", lib, "install", ctx.server.dsn(tpl), {})
        await settle(ctx.server.dsn(tpl))


def snapshot_job_source() -> Path:
    """Copy src/job for this run's agents (see AGENT_ENV)."""
    root = Path(tempfile.mkdtemp(prefix="job-bench-src-"))
    shutil.copytree(
        REPO / "src" / "job", root / "job", ignore=shutil.ignore_patterns("__pycache__")
    )
    AGENT_ENV.clear()
    AGENT_ENV.update(os.environ)
    AGENT_ENV["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p
    )
    return root


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    source = snapshot_job_source()
    server = Server(os.environ.get("JOB_BENCH_DSN"))
    ctx = Ctx(
        server=server,
        runs=args.runs,
        libs=args.libs,
        quick=args.quick,
        sizes=args.sizes,
        workers=args.workers,
    )
    started = datetime.now(UTC)
    data: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(server),
        "runs": args.runs,
        "quick": args.quick,
        "libs": args.libs,
        "worker_configs": WORKER_CONFIGS,
        "scenarios": {},
    }
    try:
        await install_templates(ctx)
        for name in args.scenarios:
            t0 = time.perf_counter()
            ctx.say(f"== scenario {name}")
            load_before = os.getloadavg()
            try:
                result = await SCENARIOS[name](ctx)
            except (AgentError, psycopg.Error, OSError) as exc:
                # Keep going: the other scenarios and the report are still worth having.
                ctx.say(f"scenario {name} FAILED: {exc}")
                result = {"error": f"{type(exc).__name__}: {exc}"[-4000:]}
            result["seconds"] = time.perf_counter() - t0
            result["loadavg_before_after"] = [load_before, os.getloadavg()]
            data["scenarios"][name] = ctx.data[name] = result
    finally:
        for lib in ctx.libs:
            server.drop(f"tpl_{lib}")
        server.close()
        shutil.rmtree(source, ignore_errors=True)
    data["seconds"] = (datetime.now(UTC) - started).total_seconds()
    data["job_commit_end"] = job_commit()  # src/ at the end (the run used the start's copy)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are kept)")
    parser.add_argument(
        "--scenarios",
        type=lambda s: s.split(","),
        default=list(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--libs", type=lambda s: s.split(","), default=list(LIBS), help="comma-separated"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="processing scenario: queue sizes (default 10000,100000)",
    )
    parser.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="processing scenario: worker process counts (default 1,2)",
    )
    parser.add_argument(
        "--configs",
        type=Path,
        help="JSON file replacing WORKER_CONFIGS (a sweep of worker settings)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not rewrite RESULTS.md")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS) | set(args.libs) - set(LIBS)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")

    if args.configs is not None:
        WORKER_CONFIGS.clear()
        WORKER_CONFIGS.update(json.loads(args.configs.read_text()))
    data = asyncio.run(amain(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = data["started"].replace(":", "").replace("-", "")[:15]
    path = RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    text = json.dumps(data, indent=1, default=str)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"results: {path.relative_to(REPO)} ({data['seconds'] / 60:.1f} min)")
    if not args.no_report:
        report.write(data, BENCH / "RESULTS.md")
        print("report: bench/RESULTS.md")


if __name__ == "__main__":
    main()
