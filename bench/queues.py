"""`queue_id` throughput: many queues, one job of each running at a time (issue 8).

    bench/.venv/bin/python bench/queues.py                      # defaults: about 3 minutes
    bench/.venv/bin/python bench/queues.py --queues 20 --jobs 10 --runs 1   # smoke test

For every run, backend (PostgreSQL, SQLite) and worker count (1 and 2 processes), two fresh
databases are filled through ``spawn_many`` (calls of 1,000 ``JobSpec``): Q x N no-op jobs
spread round-robin over Q queue ids (job n in queue n % Q), and as many unqueued jobs
(``queue_id=None``). Each is then drained by the worker processes, timed from their release
until the database holds no live execution. Figures are jobs per second, medians over
``--runs``; the cost of queues is the ratio queued/unqueued within one invocation.

Every drain is checked, from what the workers recorded in memory (job number, queue, start
and end on the machine-wide monotonic clock, per run): each job ran exactly once, the runs of
one queue never overlapped (across both processes) and followed spawn order, and the database
is left with every job finished and every queue free. A violation aborts the benchmark: a
fast but wrong drain cannot produce a figure.

The workers run a copy of src/job taken at the start (as bench/run.py), so edits to src/
during the run change nothing. Without --dsn a throwaway local PostgreSQL is started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
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
JOB_TYPE = "bench_queue"
CHUNK = 1000  # specs per spawn_many call
BACKENDS = ("postgres", "sqlite")
KINDS = ("unqueued", "queued")

# -- worker process ------------------------------------------------------------------------


def worker_main(args: argparse.Namespace) -> None:
    """One worker process: registers, prints READY, polls from GO until STOP, then writes
    what it ran (one [n, queue, start_ns, end_ns] per run) to --out and prints DONE."""
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

    runs: list[tuple[int, str | None, int, int]] = []
    clock = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for all processes of the machine

    class Runner(JobRunner[Work]):
        async def run(self, current_job: CurrentJob[Work]) -> JobCompletion:
            start = clock()
            await asyncio.sleep(0)  # let the process's other claimed runs start meanwhile
            runs.append((current_job.config.n, current_job.queue_id, start, clock()))
            return Complete()

    class Initializer(JobInitializer[Work]):
        job_type = JOB_TYPE

        def init(self, config: Work) -> JobRunner[Work]:
            return Runner()

    async def amain() -> float:
        where: dict[str, Any] = (
            {"pg_con": args.target} if args.backend == "postgres" else {"sqlite_path": args.target}
        )
        poller = JobPollerConfig(
            max_jobs_per_process=args.max_jobs, min_jobs_per_process=args.min_jobs
        )
        jobs = await Jobs.init(JobSvcConfig(**where, exec_migrations=False, poller_config=poller))
        jobs.add_initializer(Initializer())
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


def check(runs: list[list[Any]], kind: str, total: int, queues: int) -> dict[str, Any]:
    """Raise AssertionError unless the recorded runs are a correct drain; returns the peak
    number of runs in flight at once (over all processes)."""
    seen = sorted(r[0] for r in runs)
    if seen != list(range(total)):
        dup = len(seen) - len(set(seen))
        raise AssertionError(
            f"{kind}: {len(seen)} runs recorded for {total} jobs ({dup} repeated,"
            f" {total - len(set(seen))} never ran)"
        )
    if kind == "queued":
        by_queue: dict[str, list[list[Any]]] = defaultdict(list)
        for r in runs:
            if r[1] != f"q{r[0] % queues}":
                raise AssertionError(f"job {r[0]} ran with queue_id {r[1]!r}")
            by_queue[r[1]].append(r)
        for q, rs in by_queue.items():
            rs.sort(key=lambda r: r[2])
            for a, b in itertools.pairwise(rs):
                if b[2] <= a[3]:
                    raise AssertionError(f"queue {q}: job {b[0]} started while {a[0]} ran")
            order = [r[0] for r in rs]
            if order != sorted(order):
                raise AssertionError(f"queue {q}: ran out of spawn order: {order[:20]}")
    elif any(r[1] is not None for r in runs):
        raise AssertionError("an unqueued job ran with a queue_id")
    edges = sorted([(r[2], 1) for r in runs] + [(r[3], -1) for r in runs])
    peak = cur = 0
    for _, step in edges:
        cur += step
        peak = max(peak, cur)
    if kind == "queued" and peak > queues:
        raise AssertionError(f"{peak} runs in flight at once with only {queues} queues")
    return {"peak_in_flight": peak}


def self_test() -> None:
    """The check must reject an overlap, a repeat, a loss and overtaking: else no figures."""
    good = [[0, "q0", 0, 10], [2, "q0", 11, 12], [1, "q1", 0, 30], [3, "q1", 31, 40]]
    check(good, "queued", 4, 2)
    bad = {
        "overlap": [[0, "q0", 0, 10], [2, "q0", 10, 12], [1, "q1", 0, 1], [3, "q1", 2, 3]],
        "repeat": [*good, [0, "q0", 50, 51]],
        "loss": good[:3],
        "overtaking": [[2, "q0", 0, 10], [0, "q0", 11, 12], [1, "q1", 0, 1], [3, "q1", 2, 3]],
    }
    for name, runs in bad.items():
        try:
            check(runs, "queued", 4, 2)
        except AssertionError:
            continue
        raise SystemExit(f"self-test: the check accepted a drain with a {name}")


# -- orchestrator --------------------------------------------------------------------------


class Worker:
    def __init__(self, backend: str, target: str, out: Path, opts: argparse.Namespace) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker"]
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
    """One fresh database of one backend: its live-execution count and final-state checks."""

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

    def check_final(self, total: int) -> None:
        ((jobs,),) = self.query("SELECT count(*) FROM jobs")
        ((live,),) = self.query("SELECT count(*) FROM job_executions")
        assert (jobs, live) == (total, 0), f"{jobs} jobs, {live} still live"
        if self.backend == "postgres":
            ((busy,),) = self.query("SELECT count(*) FROM job_queues WHERE running_id IS NOT NULL")
            assert busy == 0, f"{busy} queue(s) still marked running"


async def fill(target: Target, kind: str, queues: int, per_queue: int) -> float:
    """Spawn the jobs through spawn_many (calls of CHUNK); returns the spawn rate (jobs/s)."""
    from pydantic import BaseModel

    from job import JobInitializer, JobRunner, Jobs, JobSpec

    class Work(BaseModel):
        n: int

    class Initializer(JobInitializer[Work]):
        job_type = JOB_TYPE

        def init(self, config: Work) -> JobRunner[Work]:
            raise AssertionError("the filling service never runs jobs")

    total = queues * per_queue
    async with await Jobs.init(target.config(migrate=True)) as jobs:
        spawner = jobs.add_initializer(Initializer())
        started = time.perf_counter()
        for first in range(0, total, CHUNK):
            specs = [
                JobSpec(Work(n=n), queue_id=f"q{n % queues}" if kind == "queued" else None)
                for n in range(first, min(first + CHUNK, total))
            ]
            await spawner.spawn_many(specs)
        rate = total / (time.perf_counter() - started)
    if target.backend == "postgres":
        import psycopg

        with psycopg.connect(target.where, autocommit=True) as conn:  # as bench/run.py
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
    return rate


async def drain(
    target: Target, n_workers: int, total: int, queues: int, ctx: Ctx, kind: str
) -> dict[str, Any]:
    workers = [
        Worker(target.backend, target.where, ctx.tmp / f"w{ctx.next_id()}.json", ctx.args)
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
    runs: list[list[Any]] = []
    for w in workers:
        runs += json.loads(w.out.read_text())
    info = check(runs, kind, total, queues)
    target.check_final(total)
    return {
        "rate": total / elapsed,
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
        return sum(self.server.cpu_seconds().values())


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


async def amain(args: argparse.Namespace, ctx: Ctx) -> dict[tuple[str, int, str], list[dict]]:
    import run  # bench/run.py: its Server (throwaway PostgreSQL, fresh databases, CPU)

    from job.migrate import run_migrations_sync

    figures: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    total = args.queues * args.jobs
    if "postgres" in args.backend:
        ctx.server = run.Server(args.dsn)
        ctx.server.create("tpl_queues")
        import psycopg

        with psycopg.connect(ctx.server.dsn("tpl_queues")) as conn:
            run_migrations_sync(conn)
    try:
        for r in range(args.runs):
            for backend in args.backend:
                for n_workers in args.workers:
                    for kind in KINDS:
                        with contextlib.ExitStack() as stack:
                            if backend == "postgres":
                                where = stack.enter_context(ctx.server.fresh("tpl_queues"))
                            else:
                                where = str(ctx.tmp / f"db{ctx.next_id()}.sqlite3")
                            target = Target(backend, where)
                            spawn_rate = await fill(target, kind, args.queues, args.jobs)
                            res = await drain(target, n_workers, total, args.queues, ctx, kind)
                        res["spawn_rate"] = spawn_rate
                        figures[(backend, n_workers, kind)].append(res)
                        pg = f" pg {res['pg_us']:4.0f} us/job" if res["pg_us"] else ""
                        print(
                            f"run {r + 1} {backend:<8} {n_workers} worker(s) {kind:<8}"
                            f" {res['rate']:>7.0f} jobs/s  worker {res['worker_us']:4.0f}"
                            f" us/job{pg}  peak in flight {res['peak_in_flight']:>4}"
                            f"  per process {res['per_process']}  (spawn {spawn_rate:.0f}/s)",
                            flush=True,
                        )
    finally:
        if ctx.server is not None:
            ctx.server.drop("tpl_queues")
            ctx.server.close()
    return figures


def summary(args: argparse.Namespace, figures: dict[tuple[str, int, str], list[dict]]) -> None:
    def med(key: tuple[str, int, str], field: str) -> float:
        values = [x[field] for x in figures[key] if x[field] is not None]
        return statistics.median(values) if values else float("nan")

    total = args.queues * args.jobs
    print(
        f"\nmedians over {args.runs} run(s): {args.queues} queues x {args.jobs} jobs"
        f" = {total} queued jobs vs {total} unqueued, max {args.max_jobs} / min"
        f" {args.min_jobs}, job at {args.commit}"
    )
    print(
        "| backend | workers | unqueued jobs/s | queued jobs/s | queued/unqueued"
        " | worker us/job (unq / q) | PostgreSQL us/job (unq / q) | peak in flight (q) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for backend in args.backend:
        for n in args.workers:
            u, q = (backend, n, "unqueued"), (backend, n, "queued")
            pg = f"{med(u, 'pg_us'):.0f} / {med(q, 'pg_us'):.0f}" if backend == "postgres" else "-"
            print(
                f"| {backend} | {n} | {med(u, 'rate'):,.0f} | {med(q, 'rate'):,.0f}"
                f" | {med(q, 'rate') / med(u, 'rate'):.2f}"
                f" | {med(u, 'worker_us'):.0f} / {med(q, 'worker_us'):.0f} | {pg}"
                f" | {med(q, 'peak_in_flight'):.0f} |"
            )
    for backend in args.backend:
        u, q = (backend, args.workers[0], "unqueued"), (backend, args.workers[0], "queued")
        print(
            f"bulk spawn {backend}: unqueued {med(u, 'spawn_rate'):,.0f} jobs/s,"
            f" queued {med(q, 'spawn_rate'):,.0f} jobs/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=200, help="queue ids (default 200)")
    parser.add_argument("--jobs", type=int, default=50, help="jobs per queue (default 50)")
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
    parser.add_argument("--max-jobs", type=int, default=500, help="max_jobs_per_process")
    parser.add_argument("--min-jobs", type=int, default=250, help="min_jobs_per_process")
    parser.add_argument("--dsn", help="a PostgreSQL server where databases may be created")
    parser.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="measure DIR/job instead of this repository's src/job (an A/B worktree)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per drain")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.backend = args.backend[0]
        worker_main(args)
        return
    if set(args.backend) - set(BACKENDS):
        parser.error(f"--backend: one or more of {','.join(BACKENDS)}")
    self_test()
    args.commit = commit()  # of the source copied below (src/ may change during the run)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="job-bench-queues-") as folder:
        tmp = Path(folder)
        ctx = Ctx(args, tmp, snapshot_source(tmp, args.src))
        figures = asyncio.run(amain(args, ctx))
    summary(args, figures)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
