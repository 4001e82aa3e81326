"""Benchmark `job` against pgqueuer (psycopg and asyncpg drivers), oban and procrastinate.

One command, see bench/README.md.

    bench/run.sh                      # the whole thing (creates bench/.venv first)
    bench/.venv/bin/python bench/run.py --runs 3 --scenarios spawn,latency

Starts one throwaway PostgreSQL server per profile ("fast": durability off; "durable":
fsync, synchronous_commit and full_page_writes on), or uses ``JOB_BENCH_DSN`` (which must be
allowed to create databases), installs each library's schema into a template database, and
gives every single measurement its own fresh copy of that template. The agents run a copy of
src/job taken at the start, so editing src/ during a run changes nothing. All
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
import signal
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
LIBS = ("job", "pgqueuer", "pgqueuer-asyncpg", "oban", "procrastinate")
PROFILES = ("fast", "durable")
# The durable profile (fsync, synchronous_commit, full_page_writes on) runs only these, with
# each library's best configuration of the fast profile (plus job's default): see README.md.
DURABLE_SCENARIOS = ("spawn", "process", "latency")
# oban needs Python >= 3.12: its agents run in a second virtualenv made by bench/run.sh.
VENV312_PYTHON = Path(
    os.environ.get("JOB_BENCH_PY312_PYTHON", str(BENCH / ".venv312" / "bin" / "python"))
)
PY312_LIBS = {"oban"}
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
    "pgqueuer-asyncpg": [
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
    "oban": [
        {"name": "default (queue limit 10)", "opts": {"limit": 10}, "fallback": True},
        {"name": "queue limit 100, pool 20", "opts": {"limit": 100, "pool": 20}},
    ],
    "procrastinate": [
        {"name": "default (concurrency 1)", "opts": {"concurrency": 1}, "fallback": True},
        {"name": "concurrency 30, pool 35", "opts": {"concurrency": 30, "pool": 35}},
    ],
}

# Budget (a full run, both profiles, in about 60 minutes on 2 cores): procrastinate, about ten
# times slower than the others, drains 10,000 jobs once per configuration and worker count
# (not `--runs` times); it and oban (a third of pgqueuer's rate here, and a bulk insert of one
# statement per job) skip 100,000 (their memory figure then comes from 10,000 jobs), and oban
# skips the backlog scenario (filling 1,000,000 jobs one INSERT at a time takes 5 minutes).
SINGLE_RUN_LIBS = {"procrastinate"}
SKIP_100K_LIBS = {"procrastinate", "oban"}
SKIP_BACKLOG_LIBS = {"oban"}
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
    if lib in ctx.best_from:  # the durable profile: the fast profile's best
        return ctx.best_from[lib]
    return next((c for c in WORKER_CONFIGS[lib] if c.get("fallback")), WORKER_CONFIGS[lib][0])


def configs_for(ctx: Ctx, lib: str) -> list[dict[str, Any]]:
    """The configurations measured at the smallest processing size: all of them, or (durable
    profile) the fast profile's best one plus the library's default."""
    if lib not in ctx.best_from:
        return WORKER_CONFIGS[lib]
    default = WORKER_CONFIGS[lib][0]
    best = ctx.best_from[lib]
    return [best] if best["name"] == default["name"] or lib != "job" else [default, best]


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
    # oban's fetch_jobs.sql: state 'available' AND queue = ... ORDER BY priority, scheduled_at,
    # id (index oban_jobs_state_queue_priority_scheduled_at_id_index).
    "oban": (
        "SELECT priority, scheduled_at, id FROM oban_jobs WHERE state = 'available'"
        " AND queue = %(q)s ORDER BY priority, scheduled_at, id OFFSET %(k)s LIMIT 1"
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
    "oban": (
        "SELECT count(*) FROM oban_jobs"
        " WHERE state = ANY (ARRAY['available', 'executing']::oban_job_state[])"
        " AND queue = %(q)s AND (priority, scheduled_at, id) <= (%(b0)s, %(b1)s, %(b2)s)"
    ),
    "procrastinate": (
        "SELECT count(*) FROM procrastinate_jobs"
        " WHERE status = ANY (ARRAY['todo', 'doing']::procrastinate_job_status[])"
        " AND id <= %(b0)s"
    ),
}
WINDOW_BOUND_SQL["pgqueuer-asyncpg"] = WINDOW_BOUND_SQL["pgqueuer"]  # the same tables
REMAINING_SQL["pgqueuer-asyncpg"] = REMAINING_SQL["pgqueuer"]
QUEUE = "bench"  # procrastinate's and oban's queue (agent.py)

# A drain in which no job completes for this long fails (a worker stuck or logging errors)
# instead of waiting for the 30-minute limit.
STALL_SECONDS = 120.0

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
        python = str(VENV312_PYTHON) if lib in PY312_LIBS else sys.executable
        self.argv = [python, str(AGENT), lib, command, dsn, json.dumps(opts)]
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

    def __init__(self, dsn: str | None, durable: bool = False) -> None:
        self.local: Any = None
        if dsn is None:
            from job.testing._localpg import LocalPostgres

            self.local = LocalPostgres(max_connections=200, durable=durable).start()
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
    profile: str = "fast"
    best_from: dict[str, dict[str, Any]] = field(default_factory=dict)  # durable: fast's best

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
        args = {"t": JOB_TYPE, "q": QUEUE, "k": window - 1}
        cur = await conn.execute(WINDOW_BOUND_SQL[lib], args)
        row = await cur.fetchone()
    if row is None:
        raise RuntimeError(f"{lib}: fewer than {window} jobs queued")
    bound = {f"b{i}": row[i] if i < len(row) else None for i in range(3)}
    return {"t": JOB_TYPE, "q": QUEUE, **bound}


async def drain(
    server: Server,
    lib: str,
    dsn: str,
    opts: dict[str, Any],
    workers: int,
    window: int,
    label: str,
    wrap: list[str] | None = None,
    rss_every: float | None = None,
) -> dict[str, Any]:
    """Start ``workers`` worker processes on a pre-filled database, release them together and
    wait until the first ``window`` jobs (claim order) are done, watching the database.

    ``wrap`` prefixes the workers' command line (a profiler); they are then let exit.
    ``rss_every`` (seconds): sample the first worker's RSS about that often (and poll the
    database at that pace), giving ``rss_curve`` = [[seconds, rss_kb, jobs done], ...]."""
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
        t_progress = t0
        curve: list[list[float]] = []

        def sample_rss(done: int) -> None:
            with contextlib.suppress(psutil.Error):
                rss = procs[0].memory_info().rss // 1024
                curve.append([round(time.time() - t0, 2), rss, done])

        if rss_every:
            sample_rss(0)
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
            if rss_every:
                sample_rss(window - remaining)
            if remaining == 0:
                t_end = t_query
                worker_cpu = cpu_delta(worker_cpu0, cpu_by_pid(procs))
                pg_cpu = cpu_delta(pg_cpu0, server.cpu_seconds()) if pg_cpu0 else None
                break
            if t_query - t0 > 1800:
                raise AgentError(f"{label}: {remaining} jobs still not done after 30 minutes")
            if remaining < r_last:
                t_progress = t_query
            elif t_query - t_progress > STALL_SECONDS:
                tail = crew[0].log_path.read_text()[-3000:]
                raise AgentError(
                    f"{label}: no job done for {STALL_SECONDS:.0f}s ({remaining} left);"
                    f" first worker's stderr:\n{tail}"
                )
            # Poll more often as the end nears: about 4 polls over the expected rest.
            rate = (r_last - remaining) / max(t_query - t_last, 1e-3)
            t_last, r_last = t_query, remaining
            expected = remaining / rate if rate > 0 else 1.0
            sleep = rss_every or min(max(expected / 4, 0.01), 0.25)
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
        **({"rss_curve": curve} if rss_every else {}),
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
                configs = configs_for(ctx, lib) if size == sizes[0] else [best_config(ctx, lib)]
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
    libs = [lib for lib in ctx.libs if lib not in SKIP_BACKLOG_LIBS]
    windows = {lib: min(small, BACKLOG_WINDOW.get(lib, small)) for lib in libs}
    out: dict[str, Any] = {
        "windows": windows,
        "backlogs": backlogs,
        "results": [],
        "fill": {},
        "skipped": sorted(set(ctx.libs) & SKIP_BACKLOG_LIBS),
    }
    try:
        for lib in libs:
            for backlog in backlogs:
                tpl = f"tpl_{lib}_{backlog}"
                ctx.server.create(tpl, f"tpl_{lib}")
                t0 = time.perf_counter()
                await prefill(lib, ctx.server.dsn(tpl), backlog)
                out["fill"][f"{lib}/{backlog}"] = time.perf_counter() - t0
                ctx.say(f"backlog {lib}: filled {backlog} rows in {time.perf_counter() - t0:.1f}s")
        for run in range(ctx.runs):
            for lib in libs:
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
        if "job" in ctx.libs:
            out["memory1m"] = await memory_drain(ctx, f"tpl_job_{big}", big)
    finally:
        for lib in libs:
            for backlog in backlogs:
                ctx.server.drop(f"tpl_{lib}_{backlog}")
    return out


RSS_EVERY = 1.0  # seconds between RSS samples of the memory1m drain


async def memory_drain(ctx: Ctx, template: str, size: int) -> dict[str, Any]:
    """``memory1m``: one `job` worker (best configuration) drains the whole big backlog (all
    ``size`` jobs, once per invocation) while its RSS is sampled about every second."""
    cfg = best_config(ctx, "job")
    with ctx.server.fresh(template) as dsn:
        res = await drain(
            ctx.server, "job", dsn, cfg["opts"], 1, size, "job-memory1m", rss_every=RSS_EVERY
        )
    curve = res["rss_curve"]

    def rss_at(fraction: float) -> float | None:
        return next((kb for _, kb, done in curve if done >= fraction * size), None)

    out = {
        "size": size,
        "config": cfg["name"],
        "rate": res["rate"],
        "elapsed": res["elapsed"],
        "ready_rss_kb": res["ready_rss_kb"][0],
        "peak_rss_kb": res["peak_rss_kb"][0],
        "rss_10pct_kb": rss_at(0.1),
        "rss_50pct_kb": rss_at(0.5),
        "rss_end_kb": curve[-1][1] if curve else None,
        "curve": curve,
    }
    ctx.say(
        f"memory1m job: {size:,} jobs in {res['elapsed']:.0f}s; RSS at 10%"
        f" {(out['rss_10pct_kb'] or 0) / 1024:.0f} MiB, at the end"
        f" {(out['rss_end_kb'] or 0) / 1024:.0f} MiB"
    )
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


SQLITE_SCRIPT = BENCH / "sqlite_peers.py"


async def scenario_sqlite(ctx: Ctx) -> dict[str, Any]:
    """`job` vs huey on SQLite: runs bench/sqlite_peers.py (maintained beside this file) and
    keeps its samples ({"samples": {lib: {"single"|"bulk"|"process": [jobs/s, ...]}}})."""
    out: dict[str, Any] = {"script": str(SQLITE_SCRIPT.relative_to(REPO))}
    if not SQLITE_SCRIPT.exists():
        return {**out, "error": f"FileNotFoundError: {out['script']} does not exist"}
    log_path = RESULTS / "logs" / "sqlite_peers.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="job-bench-sqlite-") as tmp:
        target = Path(tmp) / "sqlite.json"
        argv = [sys.executable, str(SQLITE_SCRIPT), "--runs", str(ctx.runs)]
        argv += [*(["--quick"] if ctx.quick else []), "--json", str(target)]
        with log_path.open("w") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO), env=AGENT_ENV or None
            )
            try:
                code = await asyncio.wait_for(proc.wait(), 1800)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return {**out, "error": "sqlite_peers.py did not finish within 30 minutes"}
        tail = log_path.read_text()[-3000:]
        if code != 0:
            return {**out, "error": f"sqlite_peers.py exited with status {code}; output:\n{tail}"}
        try:
            result = json.loads(target.read_text())
            samples = result["samples"]
        except (OSError, ValueError, KeyError) as exc:
            return {**out, "error": f"sqlite_peers.py wrote no usable {target.name}: {exc!r}"}
    out.update(samples=samples, notes=result.get("notes", {}))
    for lib, modes in samples.items():
        figures = ", ".join(f"{m} {median(v):.0f}" for m, v in modes.items() if v)
        ctx.say(f"sqlite {lib:8} jobs/s: {figures}")
    return out


SCENARIOS = {
    "spawn": scenario_spawn,
    "process": scenario_process,
    "latency": scenario_latency,
    "backlog": scenario_backlog,
    "memory": scenario_memory,
    "profile": scenario_profile,
    "sqlite": scenario_sqlite,
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
    for dist in (
        "job",
        "pgqueuer",
        "asyncpg",
        "procrastinate",
        "psycopg",
        "psycopg-pool",
        "psycopg-binary",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "nproc": os.cpu_count(),
        "memory": first("/proc/meminfo", "MemTotal"),
        "cpu": first("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": server.scalar("SELECT version()"),
        "postgres_settings": postgres_settings(server),
        "python312": python312(),
        "server": "LocalPostgres (throwaway)" if server.local else "JOB_BENCH_DSN",
        "versions": versions,
        "job_commit": job_commit(),
    }


def postgres_settings(server: Server) -> dict[str, Any]:
    names = (
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
        "max_connections",
    )
    return {name: server.scalar(f"SHOW {name}") for name in names}


def python312() -> dict[str, Any]:
    """The second interpreter (oban's agents): its Python version and oban's, or why not."""
    probe = (
        "import platform, importlib.metadata as m, json;"
        "print(json.dumps({'python': platform.python_version(),"
        " 'versions': {d: m.version(d) for d in ('oban', 'psycopg', 'psycopg-pool')}}))"
    )
    if not VENV312_PYTHON.exists():
        return {"error": f"{VENV312_PYTHON} does not exist (bench/run.sh makes it)"}
    out = subprocess.run([str(VENV312_PYTHON), "-c", probe], capture_output=True, text=True)
    if out.returncode != 0:
        return {"path": str(VENV312_PYTHON), "error": out.stderr.strip()[-500:]}
    return {"path": str(VENV312_PYTHON), **json.loads(out.stdout)}


def job_commit() -> str:
    """The commit of the `job` under test, with a mark if src/ has uncommitted changes."""

    def git(*argv: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "src", "pyproject.toml")
    return f"{head}{' + uncommitted src changes' if dirty else ''}"


# -- main ----------------------------------------------------------------------------------


async def install_templates(ctx: Ctx) -> dict[str, str]:
    """Each library's template; a library whose install fails is left out of this profile
    (its error is returned and recorded), the others are measured."""
    failed = {}
    for lib in list(ctx.libs):
        tpl = f"tpl_{lib}"
        ctx.server.create(tpl)
        try:
            await run_agent(f"{lib}-install", lib, "install", ctx.server.dsn(tpl), {})
        except AgentError as exc:
            ctx.say(f"{lib}: schema install FAILED, left out: {str(exc)[-500:]}")
            failed[lib] = str(exc)[-2000:]
            ctx.libs.remove(lib)
            ctx.server.drop(tpl)
            continue
        await settle(ctx.server.dsn(tpl))
    return failed


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


async def run_profile(
    args: argparse.Namespace, profile: str, best_from: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], Ctx]:
    """All scenarios of one server profile, on its own LocalPostgres (or JOB_BENCH_DSN)."""
    server = Server(os.environ.get("JOB_BENCH_DSN"), durable=profile == "durable")
    ctx = Ctx(
        server=server,
        runs=args.runs,
        libs=list(args.libs),
        quick=args.quick,
        sizes=args.sizes,
        workers=args.workers,
        profile=profile,
        best_from=best_from,
    )
    names = [n for n in args.scenarios if profile == "fast" or n in DURABLE_SCENARIOS]
    out: dict[str, Any] = {
        "postgres_settings": postgres_settings(server),
        "scenario_names": names,
        "best_from_fast": {lib: c["name"] for lib, c in best_from.items()},
        "scenarios": {},
    }
    settings = ", ".join(f"{k}={v}" for k, v in out["postgres_settings"].items())
    ctx.say(f"=== profile {profile}: {settings}")
    t_profile = time.perf_counter()
    try:
        out["install_failed"] = await install_templates(ctx)
        for name in names:
            t0 = time.perf_counter()
            ctx.say(f"== {profile}: scenario {name}")
            load_before = os.getloadavg()
            try:
                result = await SCENARIOS[name](ctx)
            except (AgentError, psycopg.Error, OSError, TimeoutError) as exc:
                # Keep going: the other scenarios and the report are still worth having.
                ctx.say(f"scenario {name} FAILED: {exc}")
                result = {"error": f"{type(exc).__name__}: {exc}"[-4000:]}
            if "error" in result and len(result) <= 3:
                ctx.say(f"scenario {name}: {result['error'][:300]}")
            result["seconds"] = time.perf_counter() - t0
            result["loadavg_before_after"] = [load_before, os.getloadavg()]
            out["scenarios"][name] = ctx.data[name] = result
    finally:
        for lib in ctx.libs:
            server.drop(f"tpl_{lib}")
        server.close()
    out["seconds"] = time.perf_counter() - t_profile
    return out, ctx


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM (e.g. `timeout`) cancels the run so that servers and agents are still cleaned up.
    main_task = asyncio.current_task()
    if main_task is not None:
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    source = snapshot_job_source()
    started = datetime.now(UTC)
    probe = Server(os.environ.get("JOB_BENCH_DSN"))
    try:
        mach = machine(probe)
    finally:
        probe.close()
    data: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": mach,
        "runs": args.runs,
        "quick": args.quick,
        "libs": args.libs,
        "skipped_libs": args.skipped_libs,
        "worker_configs": WORKER_CONFIGS,
        "profiles": {},
    }
    try:
        best_from: dict[str, dict[str, Any]] = {}
        for profile in args.profiles:
            result, ctx = await run_profile(args, profile, best_from if profile != "fast" else {})
            data["profiles"][profile] = result
            if profile == "fast":
                best_from = {lib: best_config(ctx, lib) for lib in ctx.libs}
    finally:
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
    parser.add_argument(
        "--profiles",
        type=lambda s: s.split(","),
        default=list(PROFILES),
        help="comma-separated subset of fast,durable (server durability settings)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not rewrite RESULTS.md")
    args = parser.parse_args()
    unknown = (
        set(args.scenarios) - set(SCENARIOS)
        | set(args.libs) - set(LIBS)
        | set(args.profiles) - set(PROFILES)
    )
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    args.skipped_libs = {}
    if PY312_LIBS & set(args.libs) and not VENV312_PYTHON.exists():
        # Never fake a figure: say so and measure the others.
        for lib in sorted(PY312_LIBS & set(args.libs)):
            args.skipped_libs[lib] = f"{VENV312_PYTHON} does not exist (bench/run.sh makes it)"
            print(f"skipping {lib}: {args.skipped_libs[lib]}", file=sys.stderr)
        args.libs = [lib for lib in args.libs if lib not in PY312_LIBS]

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
