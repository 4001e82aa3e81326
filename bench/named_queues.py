"""Named queues: four queues of different priorities and limits vs one (issue 9 item 1).

    bench/.venv/bin/python bench/named_queues.py                  # defaults: about 1 minute
    bench/.venv/bin/python bench/named_queues.py --jobs 400 --runs 1   # smoke test, 10 s

For every run, backend (PostgreSQL, SQLite) and worker count (1 and 2 processes), two fresh
databases are filled through ``spawn_many`` (calls of 1,000 ``JobSpec`` per type) with N
no-op jobs each, then drained by the worker processes, timed from their release until the
database holds no live execution:

* ``single``: one job type in the ``default`` queue, workers with ``queues=None`` (every
  queue, bounded only by ``max_jobs_per_process``): today's configuration.
* ``four``: the same N jobs spread round-robin over four job types (job n of type n % 4), each
  in its own named queue ``q0``..``q3`` (``JobInitializer.queue()``) with default priorities
  0, 3, 6, 9 (``JobInitializer.priority()``), workers with ``queues={"q0": 20, "q1": 10,
  "q2": 10, "q3": 5}`` (per-worker limits).

Both use ``max_jobs_per_process`` 50 / ``min_jobs_per_process`` 30 (the library's defaults,
so the single-queue bound, 50, is close to the four limits' sum, 45). Figures are jobs per
second, medians over ``--runs``; the cost of named queues is the ratio four/single within one
invocation. With equal shares, the four-queue drain ends with q3 alone at 5 per worker: the
per-queue finishing times are printed so that tail can be told apart from claim overhead.

Every drain is checked, from what the workers recorded in memory (job number, job type,
start and end on the machine-wide monotonic clock, per run; the body awaits once between
them, so the other runs a process claimed together start meanwhile): each job ran exactly
once and as its own type; within one worker process the runs of one queue in flight at once
never exceeded its limit (and all runs never exceeded ``max_jobs_per_process``); the database
held the intended types and priorities before the drain, and is left with every job present,
no live execution and no run-time queue setting. A violation aborts the benchmark: a fast but
wrong drain cannot produce a figure. A checker self-test runs first.

Priority is checked only loosely: with one worker, the mean start rank of q0's jobs must come
before q3's. Each limited queue is claimed in a statement of its own, bounded by its free
slots, so with these limits the order between queues is set mostly by the limits (q0 runs 20
at a time, q3 5), not by the priority column; the check only catches a grossly wrong order
(e.g. q3 drained first). Claim order by priority within one statement is covered by
tests/conformance/test_claim_order.py and test_named_queues.py, not here.

The workers run a copy of src/job taken at the start (as bench/run.py), so edits to src/
during the run change nothing. Without --dsn a throwaway local PostgreSQL is started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CHUNK = 1000  # specs per spawn_many call
BACKENDS = ("postgres", "sqlite")
KINDS = ("single", "four")
#: Per-worker limits of the four named queues, and their types' default priorities.
LIMITS = {"q0": 20, "q1": 10, "q2": 10, "q3": 5}
PRIORITIES = {"q0": 0, "q1": 3, "q2": 6, "q3": 9}


def job_types(kind: str) -> list[tuple[str, str, int]]:
    """(job type, named queue, default priority) of a scenario; job n is of entry n % len."""
    if kind == "single":
        return [("bench_single", "default", 0)]
    return [(f"bench_{q}", q, PRIORITIES[q]) for q in LIMITS]


def type_of(kind: str, n: int) -> str:
    types = job_types(kind)
    return types[n % len(types)][0]


# -- worker process ------------------------------------------------------------------------


def worker_main(args: argparse.Namespace) -> None:
    """One worker process: registers, prints READY, polls from GO until STOP, then writes
    what it ran (one [n, job_type, start_ns, end_ns] per run) to --out and prints DONE."""
    from pydantic import BaseModel

    from job import (
        Complete,
        CurrentJob,
        JobCompletion,
        JobInitializer,
        JobPollerConfig,
        JobRunner,
        Jobs,
        JobSvcConfig,
    )

    class Work(BaseModel):
        n: int

    runs: list[tuple[int, str, int, int]] = []
    clock = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for all processes of the machine

    class Runner(JobRunner[Work]):
        async def run(self, current_job: CurrentJob[Work]) -> JobCompletion:
            start = clock()
            await asyncio.sleep(0)  # let the process's other claimed runs start meanwhile
            runs.append((current_job.config.n, current_job.job_type, start, clock()))
            return Complete()

    runner = Runner()

    def initializer(name: str, queue_name: str, prio: int) -> JobInitializer[Work]:
        class Initializer(JobInitializer[Work]):
            job_type = name

            def queue(self) -> str:
                return queue_name

            def priority(self) -> int:
                return prio

            def init(self, config: Work) -> JobRunner[Work]:
                return runner

        return Initializer()

    async def amain() -> float:
        where: dict[str, Any] = (
            {"pg_con": args.target} if args.backend == "postgres" else {"sqlite_path": args.target}
        )
        named = {"queues": dict(LIMITS)} if args.kind == "four" else {}  # None: the default
        poller = JobPollerConfig(
            max_jobs_per_process=args.max_jobs, min_jobs_per_process=args.min_jobs, **named
        )
        jobs = await Jobs.init(JobSvcConfig(**where, exec_migrations=False, poller_config=poller))
        for name, queue_name, prio in job_types(args.kind):
            jobs.add_initializer(initializer(name, queue_name, prio))
        print("READY", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        assert line.strip() == "GO", line
        cpu0 = time.process_time()
        await jobs.start_poll()
        line = await asyncio.to_thread(sys.stdin.readline)
        cpu1 = time.process_time()
        await jobs.shutdown()
        return cpu1 - cpu0

    cpu = asyncio.run(amain())
    Path(args.out).write_text(json.dumps(runs))
    print("DONE " + json.dumps({"cpu": cpu, "runs": len(runs)}), flush=True)


# -- correctness of one drain --------------------------------------------------------------


def peak(runs: list[list[Any]]) -> int:
    """Most runs in flight at once (an end and a start at the same instant do not overlap)."""
    edges = sorted([(r[2], 1) for r in runs] + [(r[3], -1) for r in runs])
    top = cur = 0
    for _, step in edges:
        cur += step
        top = max(top, cur)
    return top


def check(
    per_process: list[list[list[Any]]], kind: str, total: int, max_jobs: int
) -> dict[str, Any]:
    """Raise AssertionError unless the recorded runs (one list per worker process) are a
    correct drain; returns the peaks in flight, per-queue finishing times and start ranks."""
    runs = [r for rs in per_process for r in rs]
    seen = sorted(r[0] for r in runs)
    if seen != list(range(total)):
        dup = len(seen) - len(set(seen))
        raise AssertionError(
            f"{kind}: {len(seen)} runs recorded for {total} jobs ({dup} repeated,"
            f" {total - len(set(seen))} never ran)"
        )
    queue_of = {name: q for name, q, _ in job_types(kind)}
    for r in runs:
        if r[1] != type_of(kind, r[0]):
            raise AssertionError(f"job {r[0]} ran as type {r[1]!r}, not {type_of(kind, r[0])!r}")
    peaks: dict[str, int] = defaultdict(int)  # per queue, the highest over processes
    for p, rs in enumerate(per_process):
        if (top := peak(rs)) > max_jobs:
            raise AssertionError(f"process {p}: {top} runs in flight, max_jobs {max_jobs}")
        peaks["all"] = max(peaks["all"], top)
        by_queue: dict[str, list[list[Any]]] = defaultdict(list)
        for r in rs:
            by_queue[queue_of[r[1]]].append(r)
        for q, qrs in by_queue.items():
            top = peak(qrs)
            limit = LIMITS.get(q) if kind == "four" else None
            if limit is not None and top > limit:
                raise AssertionError(
                    f"process {p}: {top} runs of queue {q} at once, limit {limit}"
                )
            peaks[q] = max(peaks[q], top)
    first = min(r[2] for r in runs)
    done_at: dict[str, float] = defaultdict(float)  # seconds from the first start
    ranks: dict[str, list[int]] = defaultdict(list)
    for rank, r in enumerate(sorted(runs, key=lambda r: (r[2], r[0]))):
        q = queue_of[r[1]]
        ranks[q].append(rank)
        done_at[q] = max(done_at[q], (r[3] - first) / 1e9)
    mean_rank = {q: statistics.fmean(v) / total for q, v in ranks.items()}
    one = kind == "four" and len(per_process) == 1 and {"q0", "q3"} <= mean_rank.keys()
    if one and mean_rank["q0"] >= mean_rank["q3"]:
        raise AssertionError(
            f"priority: q0's mean start rank {mean_rank['q0']:.2f} is not before"
            f" q3's {mean_rank['q3']:.2f} (one worker)"
        )
    return {"peaks": dict(peaks), "done_at": dict(done_at), "mean_rank": mean_rank}


def self_test() -> None:
    """The check must reject a repeat, a loss, a wrong type, a queue over its limit in one
    process, a process over max_jobs, and q3 drained before q0 by one worker, each for its
    own reason: else no figures."""
    total = 24  # type n % 4: 6 jobs per queue, one more than q3's limit
    base = [[n, type_of("four", n), 10 * n, 10 * n + 5] for n in range(total)]
    check([base], "four", total, 50)
    together = [[n, t, 1000, 1001] if t == "bench_q3" else [n, t, s, e] for n, t, s, e in base]
    check([together[:12], together[12:]], "four", total, 50)  # 3 + 3 per process: fine
    q3_first = sorted(base, key=lambda r: (r[1] != "bench_q3", r[0]))
    q3_first = [[n, t, 10 * i, 10 * i + 5] for i, (n, t, _, _) in enumerate(q3_first)]
    check([q3_first[:12], q3_first[12:]], "four", total, 50)  # not checked with 2 workers
    bad: dict[str, tuple[list[list[list[Any]]], int, str]] = {
        "repeat": ([[*base, base[0]]], 50, "1 repeated"),
        "loss": ([base[:-1]], 50, "1 never ran"),
        "wrong type": ([[[0, "bench_q1", 0, 5], *base[1:]]], 50, "ran as type"),
        "queue over its limit": ([together], 50, "runs of queue q3 at once"),
        "process over max_jobs": ([[[n, t, 0, 1] for n, t, _, _ in base]], 10, "max_jobs"),
        "q3 first": ([q3_first], 50, "priority"),
    }
    for name, (per_process, max_jobs, reason) in bad.items():
        try:
            check(per_process, "four", total, max_jobs)
        except AssertionError as exc:
            if reason in str(exc):
                continue
            raise SystemExit(
                f"self-test: a drain with a {name} failed for another reason: {exc}"
            ) from None
        raise SystemExit(f"self-test: the check accepted a drain with a {name}")


# -- orchestrator --------------------------------------------------------------------------


class Worker:
    def __init__(
        self, backend: str, target: str, kind: str, out: Path, opts: argparse.Namespace
    ) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--kind", kind]
        argv += ["--backend", backend, "--target", target, "--out", str(out)]
        argv += ["--max-jobs", str(opts.max_jobs), "--min-jobs", str(opts.min_jobs)]
        self.argv = argv

    async def start(self, env: dict[str, str]) -> None:
        with self.log.open("w") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
            )

    async def expect(self, word: str, timeout: float) -> str:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"worker exited before {word}: {self.log.read_text()[-3000:]}")
            text = line.decode().strip()
            if text.split(" ", 1)[0] == word:
                return text[len(word) :].strip()

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class Target:
    """One fresh database of one backend: its live-execution count and state checks."""

    def __init__(self, backend: str, where: str) -> None:
        self.backend = backend
        self.where = where

    def config(self, migrate: bool) -> Any:
        from job import JobSvcConfig

        if self.backend == "postgres":
            return JobSvcConfig(pg_con=self.where, exec_migrations=False)
        return JobSvcConfig(sqlite_path=self.where, exec_migrations=migrate)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.backend == "postgres":
            import psycopg

            with psycopg.connect(self.where, autocommit=True) as conn:
                return conn.execute(sql).fetchall()  # type: ignore[arg-type]
        db = sqlite3.connect(self.where, timeout=30)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    async def wait_empty(self, workers: list[Worker], timeout: float) -> None:
        """Poll the live-execution count until 0 (every 5 ms, on its own connection)."""
        deadline = time.monotonic() + timeout
        sql = "SELECT count(*) FROM job_executions"
        if self.backend == "postgres":
            import psycopg

            async with await psycopg.AsyncConnection.connect(self.where, autocommit=True) as c:
                while True:
                    row = await (await c.execute(sql)).fetchone()
                    if row is not None and row[0] == 0:
                        return
                    self._alive_or_raise(workers, deadline)
                    await asyncio.sleep(0.005)
        db = sqlite3.connect(self.where, timeout=30)
        try:
            while db.execute(sql).fetchone()[0]:
                self._alive_or_raise(workers, deadline)
                await asyncio.sleep(0.005)
        finally:
            db.close()

    @staticmethod
    def _alive_or_raise(workers: list[Worker], deadline: float) -> None:
        for w in workers:
            if w.proc.returncode is not None:
                raise RuntimeError(f"a worker died: {w.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("drain timed out")

    def expected(self, kind: str, total: int) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for n in range(total):
            counts[type_of(kind, n)] += 1
        return dict(counts)

    def named_queues(self) -> bool:
        """Has the schema priorities and named queues (migration 0006)? Not on a --src from
        before them, where only the single scenario runs."""
        if self.backend == "postgres":
            sql = "SELECT to_regclass('job_queue_settings') IS NOT NULL"
        else:
            sql = "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'job_queue_settings'"
        return bool(self.query(sql)[0][0])

    def check_filled(self, kind: str, total: int) -> None:
        """Before the drain: every job pending, of the intended type and default priority."""
        prio_of = {name: prio for name, _, prio in job_types(kind)}
        want = {(t, prio_of[t], "pending"): c for t, c in self.expected(kind, total).items()}
        if self.named_queues():
            rows = self.query(
                "SELECT job_type, priority, state, count(*) FROM job_executions"
                " GROUP BY job_type, priority, state"
            )
            self._no_queue_settings()
        else:
            assert kind == "single", "this job has no named queues: use --scenarios single"
            rows = self.query(
                "SELECT job_type, 0, state, count(*) FROM job_executions GROUP BY job_type, state"
            )
        got = {(t, int(p), s): c for t, p, s, c in rows}
        assert got == want, f"filled with {got}, expected {want}"

    def check_final(self, kind: str, total: int) -> None:
        """After the drain: every job present, no live execution, no run-time setting."""
        jobs = dict(self.query("SELECT job_type, count(*) FROM jobs GROUP BY job_type"))
        ((live,),) = self.query("SELECT count(*) FROM job_executions")
        assert jobs == self.expected(kind, total), f"jobs by type {jobs}"
        assert live == 0, f"{live} execution(s) still live"
        if self.named_queues():
            self._no_queue_settings()

    def _no_queue_settings(self) -> None:
        # The limits checked are the configured ones: a stored override would change them.
        rows = self.query("SELECT name, paused, concurrency FROM job_queue_settings")
        assert not rows, f"run-time queue settings present: {rows}"


async def fill(target: Target, kind: str, total: int) -> float:
    """Spawn the jobs through spawn_many, calls of CHUNK per type, the types interleaved
    (each round spawns CHUNK of every type); returns the spawn rate (jobs/s)."""
    from pydantic import BaseModel

    from job import JobInitializer, JobRunner, Jobs, JobSpec

    class Work(BaseModel):
        n: int

    def initializer(name: str, queue_name: str, prio: int) -> JobInitializer[Work]:
        class Initializer(JobInitializer[Work]):
            job_type = name

            def queue(self) -> str:
                return queue_name

            def priority(self) -> int:
                return prio

            def init(self, config: Work) -> JobRunner[Work]:
                raise AssertionError("the filling service never runs jobs")

        return Initializer()

    types = job_types(kind)
    async with await Jobs.init(target.config(migrate=True)) as jobs:
        spawners = [jobs.add_initializer(initializer(*t)) for t in types]
        started = time.perf_counter()
        step = CHUNK * len(types)
        for first in range(0, total, step):
            for i, spawner in enumerate(spawners):
                specs = [
                    JobSpec(Work(n=n))
                    for n in range(first, min(first + step, total))
                    if n % len(types) == i
                ]
                if specs:
                    await spawner.spawn_many(specs)
        rate = total / (time.perf_counter() - started)
    if target.backend == "postgres":
        import psycopg

        with psycopg.connect(target.where, autocommit=True) as conn:  # as bench/run.py
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
    return rate


async def drain(target: Target, n_workers: int, total: int, ctx: Ctx, kind: str) -> dict[str, Any]:
    workers = [
        Worker(target.backend, target.where, kind, ctx.tmp / f"w{ctx.next_id()}.json", ctx.args)
        for _ in range(n_workers)
    ]
    try:
        for w in workers:
            await w.start(ctx.env)
        for w in workers:
            await w.expect("READY", 60)
        pg_before = ctx.pg_cpu()
        started = time.perf_counter()
        for w in workers:
            w.send("GO")
        await target.wait_empty(workers, timeout=ctx.args.timeout)
        elapsed = time.perf_counter() - started
        pg_used = ctx.pg_cpu() - pg_before
        for w in workers:
            w.send("STOP")
        reports = [json.loads(await w.expect("DONE", 60)) for w in workers]
        for w in workers:
            await asyncio.wait_for(w.proc.wait(), 30)
    finally:
        for w in workers:
            await w.kill()
    per_process = [json.loads(w.out.read_text()) for w in workers]
    info = check(per_process, kind, total, ctx.args.max_jobs)
    target.check_final(kind, total)
    return {
        "rate": total / elapsed,
        "seconds": elapsed,
        "worker_us": sum(r["cpu"] for r in reports) / total * 1e6,
        "pg_us": pg_used / total * 1e6 if target.backend == "postgres" else None,
        "per_process": [r["runs"] for r in reports],
        **info,
    }


class Ctx:
    def __init__(self, args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> None:
        self.args = args
        self.tmp = tmp
        self.env = env
        self.counter = 0
        self.server: Any = None

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    def pg_cpu(self) -> float:
        """CPU seconds used so far by our own PostgreSQL server's processes (0 with --dsn)."""
        if self.server is None or self.server.local is None:
            return 0.0
        return float(sum(self.server.cpu_seconds().values()))


def snapshot_source(tmp: Path, src: Path) -> dict[str, str]:
    """Copy src/job under tmp, first on sys.path here and on the workers' PYTHONPATH."""
    shutil.copytree(src / "job", tmp / "src" / "job", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(tmp / "src"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tmp / "src"), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


def commit() -> str:
    def git(*argv: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True)
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted src changes" if dirty else "")


def describe(kind: str, res: dict[str, Any]) -> str:
    if kind == "single":
        return f"peak in flight {res['peaks']['all']:>3}"
    peaks = "/".join(str(res["peaks"].get(q, 0)) for q in LIMITS)
    done = "/".join(f"{res['done_at'].get(q, 0):.2f}" for q in LIMITS)
    ranks = "/".join(f"{res['mean_rank'].get(q, 0):.2f}" for q in LIMITS)
    return f"peak q0-q3 {peaks}  done at {done} s  mean start rank {ranks}"


async def amain(
    args: argparse.Namespace, ctx: Ctx
) -> dict[tuple[str, int, str], list[dict[str, Any]]]:
    import run  # bench/run.py: its Server (throwaway PostgreSQL, fresh databases, CPU)

    from job.migrate import run_migrations_sync

    figures: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    if "postgres" in args.backend:
        ctx.server = run.Server(args.dsn)
        ctx.server.create("tpl_named_queues")
        import psycopg

        with psycopg.connect(ctx.server.dsn("tpl_named_queues")) as conn:
            run_migrations_sync(conn)
    try:
        for r in range(args.runs):
            for backend in args.backend:
                for n_workers in args.workers:
                    for kind in args.scenarios:
                        with contextlib.ExitStack() as stack:
                            if backend == "postgres":
                                where = stack.enter_context(ctx.server.fresh("tpl_named_queues"))
                            else:
                                where = str(ctx.tmp / f"db{ctx.next_id()}.sqlite3")
                            target = Target(backend, where)
                            spawn_rate = await fill(target, kind, args.jobs)
                            target.check_filled(kind, args.jobs)
                            res = await drain(target, n_workers, args.jobs, ctx, kind)
                        res["spawn_rate"] = spawn_rate
                        figures[(backend, n_workers, kind)].append(res)
                        pg = f" pg {res['pg_us']:4.0f} us/job" if res["pg_us"] else ""
                        print(
                            f"run {r + 1} {backend:<8} {n_workers} worker(s) {kind:<6}"
                            f" {res['rate']:>6.0f} jobs/s  worker {res['worker_us']:4.0f}"
                            f" us/job{pg}  per process {res['per_process']}"
                            f"  {describe(kind, res)}  (spawn {spawn_rate:.0f}/s)",
                            flush=True,
                        )
    finally:
        if ctx.server is not None:
            ctx.server.drop("tpl_named_queues")
            ctx.server.close()
    return figures


def summary(
    args: argparse.Namespace, figures: dict[tuple[str, int, str], list[dict[str, Any]]]
) -> None:
    def med(key: tuple[str, int, str], field: str) -> float:
        values = [x[field] for x in figures.get(key, []) if x[field] is not None]
        return statistics.median(values) if values else float("nan")

    def fmt(value: float, spec: str) -> str:
        return "-" if value != value else format(value, spec)  # NaN: scenario not run

    limits = ", ".join(f"{q}: {n} (priority {PRIORITIES[q]})" for q, n in LIMITS.items())
    print(
        f"\nmedians over {args.runs} run(s): {args.jobs} no-op jobs per drain; single = one"
        f" type in 'default', queues=None; four = {limits}; max {args.max_jobs} / min"
        f" {args.min_jobs}; job at {args.commit}; every check passed"
    )
    print(
        "| backend | workers | single jobs/s | four queues jobs/s | four/single"
        " | worker us/job (single / four) | PostgreSQL us/job (single / four) |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in args.backend:
        for n in args.workers:
            s, f = (backend, n, "single"), (backend, n, "four")
            pg = "-"
            if backend == "postgres":
                pg = f"{fmt(med(s, 'pg_us'), '.0f')} / {fmt(med(f, 'pg_us'), '.0f')}"
            rate_s, rate_f = med(s, "rate"), med(f, "rate")
            cpu = f"{fmt(med(s, 'worker_us'), '.0f')} / {fmt(med(f, 'worker_us'), '.0f')}"
            print(
                f"| {backend} | {n} | {fmt(rate_s, ',.0f')} | {fmt(rate_f, ',.0f')}"
                f" | {fmt(rate_f / rate_s, '.2f')} | {cpu} | {pg} |"
            )
    if "four" in args.scenarios:
        print("four queues, medians: when each queue's last run ended (s from the first start)")
        for backend in args.backend:
            for n in args.workers:
                runs = figures.get((backend, n, "four"), [])
                done = "  ".join(
                    f"{q} {statistics.median(x['done_at'].get(q, 0) for x in runs):.2f}"
                    for q in LIMITS
                )
                total = statistics.median(x["seconds"] for x in runs)
                print(f"  {backend:<8} {n} worker(s): {done}  (drain {total:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per drain (default 4000)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians kept)")
    parser.add_argument(
        "--backend",
        type=lambda s: s.split(","),
        default=list(BACKENDS),
        help="comma-separated: postgres,sqlite",
    )
    parser.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="worker process counts (default 1,2)",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda s: s.split(","),
        default=list(KINDS),
        help="comma-separated: single,four (single alone runs on a --src without named queues)",
    )
    parser.add_argument("--max-jobs", type=int, default=50, help="max_jobs_per_process (50)")
    parser.add_argument("--min-jobs", type=int, default=30, help="min_jobs_per_process (30)")
    parser.add_argument("--dsn", help="a PostgreSQL server where databases may be created")
    parser.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="measure DIR/job instead of this repository's src/job (an A/B worktree)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per drain")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.backend = args.backend[0]
        worker_main(args)
        return
    if set(args.backend) - set(BACKENDS):
        parser.error(f"--backend: one or more of {','.join(BACKENDS)}")
    if not args.scenarios or set(args.scenarios) - set(KINDS):
        parser.error(f"--scenarios: one or more of {','.join(KINDS)}")
    if args.jobs < 1:
        parser.error("--jobs: at least 1")
    self_test()
    # The commit of the source copied below (src/ may change during the run), or --src's path.
    args.commit = commit() if args.src.resolve() == (REPO / "src") else f"{args.src} (--src)"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="job-bench-named-queues-") as folder:
        tmp = Path(folder)
        ctx = Ctx(args, tmp, snapshot_source(tmp, args.src))
        figures = asyncio.run(amain(args, ctx))
    summary(args, figures)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
