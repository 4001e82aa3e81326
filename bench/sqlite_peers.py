"""`job` on SQLite beside huey's SQLite storage (``huey.SqliteHuey``): spawn and processing.

    bench/.venv/bin/python bench/sqlite_peers.py [--runs 3] [--jobs 10000] [--quick] [--json F]

Both libraries keep their queue in one SQLite file and need no server; this compares them on
the same machine in the same invocation (issue 11: "SQLite backend: processing and spawn
figures beside huey's SQLite storage ... target >= huey"). Every measurement runs in its own
subprocess (this file, ``agent`` mode) on a fresh file in a temporary folder, with only one of
the two libraries imported; import, file creation and connection happen before ``READY`` and
are never timed, the clock starts at ``GO`` (as in bench/agent.py).

Figures, jobs per second, medians over ``--runs`` (libraries interleaved within each run):

* ``single``: N no-op jobs, one call at a time (job: ``await spawner.spawn(Noop(n=i))``;
  huey: calling the ``@huey.task()`` function, which enqueues it).
* ``bulk``: N jobs in calls of 1,000 (job: ``spawn_many``). huey has no bulk enqueue (neither
  in its API nor in SqliteStorage, which inserts one row per ``enqueue``, each in its own
  transaction): its figure is the same loop of single enqueues, and says so in ``notes``.
* ``process``: N jobs queued first through the library's own API, then drained by ONE
  process, timed from ``GO`` until the file shows none left: job's worker (``start_poll``)
  with its default poller settings and with max 500 / min 250; huey's documented consumer
  (``huey.create_consumer(...).run()``, what ``huey_consumer`` runs) with thread workers, 1
  (its default) and 8, its other settings at their defaults (``-d 0.1 -m 10 -b 1.15``: the
  consumer polls an empty queue with that backoff; a busy one without delay). The best
  configuration of each library is its ``process`` figure; all are in ``configs``.

Durability differs by default: SqliteHuey leaves SQLite's ``synchronous`` at FULL (an fsync
of the WAL at every commit; its ``fsync=`` option only chooses FULL or OFF), job sets NORMAL
(no fsync per commit in WAL mode). The figures above use each library's defaults; huey's
single spawn and 1-worker drain are also measured with its connections set to NORMAL (a
``SqliteStorage`` subclass running the pragma), reported apart in
``configs["huey"]["synchronous_normal"]`` and never counted as samples.

Completion is read from the file by this orchestrator (job: rows left in ``job_executions``,
none ``running``; huey: rows left in ``task``), every 10 ms, and checked at the end: every job
of job's is ``completed`` in ``jobs`` with none live; huey's ``task`` table is empty and its
no-op tasks raised nothing (a task that raises is logged by the consumer: its stderr must
show no traceback). huey keeps no record of finished tasks (results of None are not stored,
``store_none=False``), so "each ran once" is only checkable for job.

``--json F`` writes {"samples": {lib: {"single": [...], "bulk": [...], "process": [...]}},
"configs": {...}, "notes": {...}} for bench/run.py's ``sqlite`` scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BULK = 1000
POLL = 0.01
JOB_CONFIGS: dict[str, dict[str, Any]] = {
    "default (max 50 / min 30)": {},  # JobPollerConfig() as shipped
    "max 500 / min 250": {"max_jobs": 500, "min_jobs": 250},
}
HUEY_CONFIGS: dict[str, dict[str, Any]] = {
    "consumer, 1 thread worker (default)": {"workers": 1},
    "consumer, 8 thread workers": {"workers": 8},
}


# -- agents (one library per process) --------------------------------------------------------


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _await_go() -> None:
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit(0)


async def _job_agent(command: str, path: str, opts: dict[str, Any]) -> None:
    from pydantic import BaseModel

    from job import Complete, JobInitializer, JobPollerConfig, JobRunner, Jobs, JobSvcConfig

    class Noop(BaseModel):
        n: int = 0

    class NoopRunner(JobRunner[Noop]):
        async def run(self, current_job: Any) -> Any:
            return Complete()

    class NoopJob(JobInitializer[Noop]):
        job_type = "bench_noop"

        def init(self, config: Noop) -> NoopRunner:
            return NoopRunner()

    poller = JobPollerConfig()
    if "max_jobs" in opts:
        poller = JobPollerConfig(
            max_jobs_per_process=opts["max_jobs"], min_jobs_per_process=opts["min_jobs"]
        )
    jobs = await Jobs.init(JobSvcConfig(sqlite_path=Path(path), poller_config=poller))
    spawner = jobs.add_initializer(NoopJob())
    count = opts.get("count", 0)
    if command == "worker":
        _say("READY")
        await asyncio.to_thread(_await_go)
        await jobs.start_poll()
        await asyncio.to_thread(sys.stdin.readline)  # STOP
    else:
        if command != "prefill":
            _say("READY")
            await asyncio.to_thread(_await_go)
        started = time.perf_counter()
        if command == "single":
            for n in range(count):
                await spawner.spawn(Noop(n=n))
        else:
            for first in range(0, count, BULK):
                batch = range(first, min(first + BULK, count))
                await spawner.spawn_many([Noop(n=n) for n in batch])
        _say("DONE " + json.dumps({"elapsed": time.perf_counter() - started}))
    await jobs.shutdown()


def _huey_agent(command: str, path: str, opts: dict[str, Any]) -> None:
    from huey import SqliteHuey

    factory: Any = SqliteHuey
    if "synchronous" in opts:  # every connection huey opens (one per consumer thread)
        from huey.storage import SqliteStorage

        class Storage(SqliteStorage):
            def _create_connection(self) -> Any:
                conn = super()._create_connection()
                conn.execute(f"PRAGMA synchronous = {opts['synchronous']}")
                return conn

        class Huey(SqliteHuey):
            storage_class = Storage

        factory = Huey
    huey = factory("bench", filename=path)

    @huey.task()
    def noop(n: int = 0) -> None:
        return None

    count = opts.get("count", 0)
    if command == "worker":
        consumer = huey.create_consumer(workers=opts.get("workers", 1), worker_type="thread")
        _say("READY")
        _await_go()
        consumer.run()  # until the orchestrator terminates this process
        return
    if command != "prefill":
        _say("READY")
        _await_go()
    started = time.perf_counter()
    for n in range(count):  # single and bulk alike: huey has no bulk enqueue
        noop(n)
    _say("DONE " + json.dumps({"elapsed": time.perf_counter() - started}))


def agent_main(lib: str, command: str, path: str, opts: dict[str, Any]) -> None:
    if lib == "job":
        asyncio.run(_job_agent(command, path, opts))
    else:
        _huey_agent(command, path, opts)


# -- orchestrator -----------------------------------------------------------------------------


class Agent:
    def __init__(self, lib: str, command: str, path: Path, opts: dict[str, Any]) -> None:
        argv = [sys.executable, __file__, "agent", lib, command, str(path), json.dumps(opts)]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def expect(self, word: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith(word):
            _, err = self.proc.communicate(timeout=30)
            raise RuntimeError(f"agent said {line!r}, expected {word}: {err[-2000:]}")
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> str:
        """Stop (closing stdin; a huey consumer is terminated) and return its stderr."""
        try:
            if self.proc.poll() is None:
                self.send("STOP")
        except (BrokenPipeError, OSError):
            pass
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            _, err = self.proc.communicate(timeout=30)
        return err


def timed_spawn(lib: str, mode: str, path: Path, count: int, **opts: Any) -> float:
    agent = Agent(lib, mode, path, {"count": count, **opts})
    agent.expect("READY")
    agent.send("GO")
    elapsed = json.loads(agent.expect("DONE").split(" ", 1)[1])["elapsed"]
    agent.finish()
    return count / elapsed


def remaining(lib: str, path: Path) -> int:
    """Jobs not yet done, read from the file (read-only, WAL readers do not block writers)."""
    table = "job_executions" if lib == "job" else "task"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def check_done(lib: str, path: Path, count: int, stderr: str) -> None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        if lib == "job":
            (jobs,) = db.execute("SELECT count(*) FROM jobs").fetchone()
            (live,) = db.execute("SELECT count(*) FROM job_executions").fetchone()
            # Each job ran exactly once and completed: one completed run per job, no errors.
            runs = dict(
                db.execute(
                    "SELECT event_type, count(*) FROM job_events WHERE event_type IN"
                    " ('execution_completed', 'execution_errored', 'job_completed')"
                    " GROUP BY event_type"
                ).fetchall()
            )
            expected = {"execution_completed": count, "job_completed": count}
            if jobs != count or live or runs != expected:
                raise RuntimeError(f"job: {jobs} jobs, {live} live, events {runs}")
        else:
            left = db.execute("SELECT count(*) FROM task").fetchone()[0]
            if left or "Traceback" in stderr:
                raise RuntimeError(f"huey: {left} tasks left; stderr: {stderr[-2000:]}")


def timed_drain(lib: str, path: Path, count: int, opts: dict[str, Any]) -> float:
    prefill = Agent(lib, "prefill", path, {"count": count})
    prefill.expect("DONE")
    prefill.finish()
    worker = Agent(lib, "worker", path, opts)
    worker.expect("READY")
    worker.send("GO")
    started = time.perf_counter()
    deadline = started + 600
    while remaining(lib, path):
        if time.perf_counter() > deadline or worker.proc.poll() is not None:
            err = worker.finish(timeout=5)
            raise RuntimeError(f"{lib} drain did not finish: {err[-2000:]}")
        time.sleep(POLL)
    elapsed = time.perf_counter() - started
    if lib == "huey":  # huey's consumer stops on SIGTERM (its immediate shutdown)
        worker.proc.terminate()
    stderr = worker.finish()
    check_done(lib, path, count, stderr)
    return count / elapsed


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def measure(runs: int, count: int) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {"job": {}, "huey": {}}
    configs: dict[str, dict[str, list[float]]] = {"job": {}, "huey": {}, "huey_normal": {}}
    with tempfile.TemporaryDirectory(prefix="job-bench-sqlite-") as folder:
        files = iter(range(10**6))

        def fresh() -> Path:
            return Path(folder) / f"m{next(files)}.db"

        for run in range(runs):
            for lib in ("job", "huey"):
                for mode in ("single", "bulk"):
                    rate = timed_spawn(lib, mode, fresh(), count)
                    samples[lib].setdefault(mode, []).append(rate)
                    print(f"run {run + 1} {lib:4} spawn {mode:6} {rate:9.0f} jobs/s", flush=True)
                if lib == "huey":  # at job's durability (synchronous=NORMAL): not samples
                    rate = timed_spawn(lib, "single", fresh(), count, synchronous="NORMAL")
                    configs["huey_normal"].setdefault("single", []).append(rate)
                    print(f"run {run + 1} huey spawn single  NORMAL {rate:9.0f} jobs/s")
                    rate = timed_drain(
                        lib, fresh(), count, {"workers": 1, "synchronous": "NORMAL"}
                    )
                    configs["huey_normal"].setdefault("process", []).append(rate)
                    print(f"run {run + 1} huey process 1 thread worker, NORMAL {rate:9.0f} jobs/s")
                for name, opts in (JOB_CONFIGS if lib == "job" else HUEY_CONFIGS).items():
                    rate = timed_drain(lib, fresh(), count, opts)
                    configs[lib].setdefault(name, []).append(rate)
                    print(f"run {run + 1} {lib:4} process {name:36} {rate:9.0f} jobs/s")
    best = {lib: max(configs[lib], key=lambda c: median(configs[lib][c])) for lib in samples}
    for lib in samples:
        samples[lib]["process"] = configs[lib][best[lib]]
    from importlib import metadata

    return {
        "samples": samples,
        "configs": {
            "job": {
                "single": "await spawner.spawn(Noop(n=i)), one call at a time",
                "bulk": f"await spawner.spawn_many([...]) in calls of {BULK}",
                "process": configs["job"],
                "process_opts": JOB_CONFIGS,
                "best": best["job"],
            },
            "huey": {
                "single": "noop(i): calling the @huey.task() function enqueues it",
                "bulk": "the same loop of noop(i): huey has no bulk enqueue",
                "process": configs["huey"],
                "process_opts": HUEY_CONFIGS,
                "best": best["huey"],
                # Its SQLite default is synchronous=FULL (an fsync per commit); job uses NORMAL.
                "synchronous_normal": {
                    "single": configs["huey_normal"]["single"],
                    "process, consumer, 1 thread worker": configs["huey_normal"]["process"],
                },
            },
        },
        "notes": {
            "jobs": count,
            "runs": runs,
            "huey_version": metadata.version("huey"),
            "sqlite_version": sqlite3.sqlite_version,
            "bulk_api": "job: spawn_many in calls of 1,000; huey: none (one enqueue per task)",
            "huey_consumer": (
                "huey.create_consumer(workers=W, worker_type='thread').run(), as huey_consumer"
                " -k thread -w W; its defaults else: -d 0.1 -m 10 -b 1.15 (idle poll delay,"
                " its cap and backoff), -s 1, periodic on; SqliteHuey defaults: WAL,"
                " synchronous left at SQLite's default (FULL), results on but None not stored"
            ),
            "job_sqlite": "WAL, synchronous=NORMAL (job's own pragmas)",
            "python": sys.version.split()[0],
        },
    }


def report(data: dict[str, Any]) -> None:
    print(f"\nmedians, jobs/s ({data['notes']['jobs']} jobs, {data['notes']['runs']} runs)")
    print(f"{'figure':10} {'job':>9} {'huey':>9} {'job/huey':>9}")
    for figure in ("single", "bulk", "process"):
        job = median(data["samples"]["job"][figure])
        huey = median(data["samples"]["huey"][figure])
        print(f"{figure:10} {job:9.0f} {huey:9.0f} {job / huey:8.2f}x")
    normal = data["configs"]["huey"]["synchronous_normal"]
    print("huey at job's durability (synchronous=NORMAL; its default is FULL):")
    for figure, key in (("single", "single"), ("process", "process, consumer, 1 thread worker")):
        job, huey = median(data["samples"]["job"][figure]), median(normal[key])
        print(f"{figure:10} {job:9.0f} {huey:9.0f} {job / huey:8.2f}x")
    for lib in ("job", "huey"):
        print(f"{lib} best process config: {data['configs'][lib]['best']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "agent":
        agent_main(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs: a smoke test")
    parser.add_argument("--json", type=Path, help="write the figures here (bench/run.py)")
    args = parser.parse_args()
    data = measure(args.runs, 1000 if args.quick else args.jobs)
    report(data)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
