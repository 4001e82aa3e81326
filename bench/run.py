"""Benchmark `job` against procrastinate and pgqueuer: one command, see bench/README.md.

    bench/run.sh                      # the whole thing (creates bench/.venv first)
    bench/.venv/bin/python bench/run.py --runs 3 --scenarios spawn,latency

Starts one throwaway PostgreSQL server for the whole run (or uses ``JOB_BENCH_DSN``, which
must be allowed to create databases), installs each library's schema into a template
database, and gives every single measurement its own fresh copy of that template. All
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
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import report

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
AGENT = BENCH / "agent.py"
RESULTS = BENCH / "results"
LIBS = ("job", "pgqueuer", "procrastinate")
JOB_TYPE = "bench_noop"

# -- settings per library ------------------------------------------------------------------
# Worker configurations for the processing scenarios. The first one of each library is its
# default; "best" marks the one used for latency, backlog and memory (chosen by sweeping the
# documented knobs on this machine, see README.md). Each library's bulk spawn API is used to
# pre-queue jobs.

WORKER_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "job": [
        {"name": "default (max 50 / min 30)", "opts": {"max_jobs": 50, "min_jobs": 30}},
        {
            "name": "max 200 / min 100",
            "opts": {"max_jobs": 200, "min_jobs": 100},
            "best": True,
        },
    ],
    "pgqueuer": [
        {"name": "default (1 manager, batch 10)", "opts": {"managers": 1, "batch_size": 10}},
        {"name": "1 manager, batch 100", "opts": {"managers": 1, "batch_size": 100}},
        {
            "name": "5 managers, batch 10 (its benchmark tool's default)",
            "opts": {"managers": 5, "batch_size": 10},
            "best": True,
        },
    ],
    "procrastinate": [
        {"name": "default (concurrency 1)", "opts": {"concurrency": 1}},
        {
            "name": "concurrency 30, pool 35",
            "opts": {"concurrency": 30, "pool": 35},
            "best": True,
        },
    ],
}


def best_config(lib: str) -> dict[str, Any]:
    for cfg in WORKER_CONFIGS[lib]:
        if cfg.get("best"):
            return cfg
    return WORKER_CONFIGS[lib][0]


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

# Fast SQL fills for the backlog scenario: the same rows each library's own spawn would write,
# made with generate_series, in claim order (the first rows are the first to be claimed).
FILL_SQL = {
    "job": [
        # UUIDv7-like ids (48-bit millisecond prefix) like the library's own new_job_id().
        """CREATE TEMP TABLE fill AS
           SELECT g, at, encode(overlay(uuid_send(gen_random_uuid())
                     PLACING substring(int8send((extract(epoch FROM at) * 1000)::int8) FROM 3)
                     FROM 1 FOR 6), 'hex')::uuid AS id
           FROM (SELECT g, now() - interval '1 hour' + g * interval '1 microsecond' AS at
                 FROM generate_series(1, %(n)s) AS g) AS s""",
        """INSERT INTO jobs (id, job_type, config, tracing_context, created_at)
           SELECT id, %(t)s, jsonb_build_object('n', g), NULL, at FROM fill ORDER BY g""",
        """INSERT INTO job_executions (id, job_type, execute_at, scheduled_at, event_seq)
           SELECT id, %(t)s, at, at, 2 FROM fill ORDER BY g""",
        """INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
           SELECT id, s, CASE s WHEN 1 THEN 'initialized' ELSE 'execution_scheduled' END,
                  CASE s WHEN 1 THEN jsonb_build_object('job_type', %(t)s::text)
                         ELSE jsonb_build_object('attempt', 1, 'scheduled_at', at) END, at
           FROM fill CROSS JOIN generate_series(1, 2) AS s ORDER BY g, s""",
        "DROP TABLE fill",
    ],
    "pgqueuer": [
        """INSERT INTO pgqueuer (priority, entrypoint, payload, execute_after, status)
           SELECT 0, %(t)s, convert_to(g::text, 'UTF8'), now() - interval '1 hour', 'queued'
           FROM generate_series(1, %(n)s) AS g ORDER BY g""",
        """INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
           SELECT id, 'queued', entrypoint, priority FROM pgqueuer ORDER BY id""",
    ],
    "procrastinate": [
        # Its insert triggers add the 'deferred' event and the notifications, as for defer.
        """INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status)
           SELECT 'bench', %(t)s, 0, jsonb_build_object('n', g), 'todo'
           FROM generate_series(1, %(n)s) AS g ORDER BY g""",
    ],
}


# -- subprocesses ----------------------------------------------------------------------------


class AgentError(RuntimeError):
    pass


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
        self.send("STOP")
        return await self.done(timeout)

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
            from job._localpg import LocalPostgres

            self.local = LocalPostgres(max_connections=200).start()
            dsn = self.local.dsn()
        self.base = conninfo_to_dict(dsn)
        self.admin = psycopg.connect(dsn, autocommit=True)
        self.version_num = int(self.scalar("SHOW server_version_num"))
        self.counter = 0

    def dsn(self, dbname: str) -> str:
        return make_conninfo(**{**self.base, "dbname": dbname})

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
    log: list[str]

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", flush=True)
        self.log.append(text)


async def run_agent(label: str, lib: str, command: str, dsn: str, opts: dict[str, Any]) -> Any:
    agent = Agent(label, lib, command, dsn, opts)
    async with agents(agent):
        return await agent.done(timeout=1800)


async def prefill(lib: str, dsn: str, count: int) -> float:
    result = await run_agent(f"{lib}-prefill", lib, "prefill", dsn, {"count": count})
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
    lib: str, dsn: str, opts: dict[str, Any], workers: int, window: int, label: str
) -> dict[str, Any]:
    """Start ``workers`` worker processes on a pre-filled database, release them together and
    wait until the first ``window`` jobs (claim order) are done, watching the database."""
    params = await window_bound(lib, dsn, window)
    crew = [Agent(f"{label}-w{i}", lib, "worker", dsn, opts) for i in range(workers)]
    async with agents(*crew), await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        for a in crew:
            await a.expect("READY", timeout=120)
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
                break
            if t_query - t0 > 1800:
                raise AgentError(f"{label}: {remaining} jobs still not done after 30 minutes")
            # Poll more often as the end nears: about 4 polls over the expected rest.
            rate = (r_last - remaining) / max(t_query - t_last, 1e-3)
            t_last, r_last = t_query, remaining
            expected = remaining / rate if rate > 0 else 1.0
            sleep = min(max(expected / 4, 0.01), 0.25)
        stats = [await a.stop() for a in crew]
    elapsed = t_end - t0
    return {
        "jobs": window,
        "elapsed": elapsed,
        "rate": window / elapsed,
        "peak_rss_kb": [s.get("peak_rss_kb") for s in stats],
        "ready_rss_kb": [s.get("ready_rss_kb") for s in stats],
    }


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
    """2. Processing throughput: pre-queued no-op jobs drained by 1 and 2 worker processes."""
    sizes = ctx.sizes or ([2000] if ctx.quick else [10_000, 100_000])
    out: dict[str, Any] = {"sizes": sizes, "results": []}
    for size in sizes:
        for run in range(ctx.runs):
            for lib in ctx.libs:
                for cfg in WORKER_CONFIGS[lib]:
                    for workers in (1, 2):
                        if not include_process_case(lib, cfg, size, workers, run, ctx):
                            continue
                        label = f"{lib}-process-{size}-{cfg_slug(cfg)}-x{workers}-{run}"
                        with ctx.server.fresh(f"tpl_{lib}") as dsn:
                            fill = await prefill(lib, dsn, size)
                            res = await drain(lib, dsn, cfg["opts"], workers, size, label)
                        res.update(
                            lib=lib, config=cfg["name"], workers=workers, size=size, run=run,
                            prefill_seconds=fill,
                        )  # fmt: skip
                        out["results"].append(res)
                        ctx.say(
                            f"process {size:>6} {lib:13} {cfg['name'][:34]:34} x{workers}"
                            f" run {run + 1}: {res['rate']:7.0f} jobs/s"
                            f" (peak RSS {max(res['peak_rss_kb']) / 1024:.0f} MiB)"
                        )
    return out


def cfg_slug(cfg: dict[str, Any]) -> str:
    return "-".join(f"{k}{v}" for k, v in sorted(cfg["opts"].items()))


# The budget (a full run in about 25 minutes on 2 cores) does not allow every configuration at
# 100,000 jobs: there only the best configuration of each library runs, and procrastinate, at
# roughly one tenth of the others' speed, only once and with one worker process.
def include_process_case(
    lib: str, cfg: dict[str, Any], size: int, workers: int, run: int, ctx: Ctx
) -> bool:
    if size < 100_000 or ctx.quick:
        return True
    if not cfg.get("best"):
        return False
    if lib == "procrastinate":
        return workers == 1 and run == 0
    return True


async def scenario_latency(ctx: Ctx) -> dict[str, Any]:
    """3. Pickup latency: an idle worker, one job spawned at a time, spawn return -> start."""
    samples, warmup = (100, 10) if ctx.quick else (500, 20)
    out: dict[str, Any] = {"samples_per_run": samples, "warmup": warmup, "runs": {}}
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
                    for n in range(warmup + samples):
                        producer.send(f"SPAWN {n}")
                        committed = float((await producer.expect("C", 30))[1])
                        started = float((await worker.expect("S", 30))[1])
                        if n >= warmup:
                            lat.append((started - committed) * 1000)
                        await asyncio.sleep(0.02)  # idle again: outcome written, poller asleep
                    await producer.stop()
                    await worker.stop()
            out["runs"].setdefault(lib, []).append(lat)
            ctx.say(
                f"latency {lib:13} run {run + 1}: p50 {percentile(lat, 0.5):6.2f} ms,"
                f" p99 {percentile(lat, 0.99):6.2f} ms"
            )
    return out


async def scenario_backlog(ctx: Ctx) -> dict[str, Any]:
    """4. Backlog scaling: drain the first 10,000 jobs with 10,000 vs 1,000,000 pending."""
    window = 2000 if ctx.quick else 10_000
    backlogs = [window, 50_000] if ctx.quick else [window, 1_000_000]
    out: dict[str, Any] = {"window": window, "backlogs": backlogs, "results": [], "fill": {}}
    for lib in ctx.libs:
        for backlog in backlogs:
            tpl = f"tpl_{lib}_{backlog}"
            ctx.server.create(tpl, f"tpl_{lib}")
            t0 = time.perf_counter()
            async with await psycopg.AsyncConnection.connect(ctx.server.dsn(tpl)) as conn:
                for stmt in FILL_SQL[lib]:
                    await conn.execute(stmt, {"n": backlog, "t": JOB_TYPE})
                await conn.commit()
            await settle(ctx.server.dsn(tpl))
            out["fill"][f"{lib}/{backlog}"] = time.perf_counter() - t0
            ctx.say(f"backlog {lib}: filled {backlog} rows in {time.perf_counter() - t0:.1f}s")
    try:
        for run in range(ctx.runs):
            for lib in ctx.libs:
                cfg = best_config(lib)
                for backlog in backlogs:
                    label = f"{lib}-backlog-{backlog}-{run}"
                    with ctx.server.fresh(f"tpl_{lib}_{backlog}") as dsn:
                        res = await drain(lib, dsn, cfg["opts"], 1, window, label)
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


SCENARIOS = {
    "spawn": scenario_spawn,
    "process": scenario_process,
    "latency": scenario_latency,
    "backlog": scenario_backlog,
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
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
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
        "job_commit": commit,
    }


# -- main ----------------------------------------------------------------------------------


async def install_templates(ctx: Ctx) -> None:
    for lib in ctx.libs:
        tpl = f"tpl_{lib}"
        ctx.server.create(tpl)
        await run_agent(f"{lib}-install", lib, "install", ctx.server.dsn(tpl), {})
        await settle(ctx.server.dsn(tpl))


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    server = Server(os.environ.get("JOB_BENCH_DSN"))
    ctx = Ctx(
        server=server, runs=args.runs, libs=args.libs, quick=args.quick, sizes=args.sizes, log=[]
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
            data["scenarios"][name] = await SCENARIOS[name](ctx)
            data["scenarios"][name]["seconds"] = time.perf_counter() - t0
    finally:
        for lib in ctx.libs:
            server.drop(f"tpl_{lib}")
        server.close()
    data["seconds"] = (datetime.now(UTC) - started).total_seconds()
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
