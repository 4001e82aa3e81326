"""The demo worker behind ``python -m job demo``: real jobs, run for real, shown as they go.

It runs on an embedded SQLite file by default (a temporary one, or ``--sqlite PATH``: no server
at all), or on PostgreSQL: ``--dsn URL`` (or ``JOB_DATABASE_URL``), or ``--postgres`` for a
throwaway local server. It says which backend it uses, applies the migrations, registers five
job types and spawns:

* ``demo_checksum``  sha256 over generated data; the digest is written to ``demo_results``
  inside the runner's transaction (``current_job.transaction()`` on PostgreSQL,
  ``sqlite_transaction()`` on SQLite), so the row commits atomically with the outcome;
* ``demo_flaky``     fails attempt 1 (``RetryLater``) and attempt 2 (an exception), then
  completes on attempt 3, with a 200 ms retry backoff;
* ``demo_report``    spawned with ``delay=2s``; summarises ``demo_results`` once it is due;
* ``demo_cleanup``   a ``spawn_unique`` singleton (spawned twice, created once) that prunes old
  ``demo_results`` rows, reschedules itself once with ``RescheduleIn``, then completes;
* ``demo_batch``     N small jobs created by one ``spawn_many`` call, timed for throughput.

It prints state changes as they happen, then every job's final state, the checks it made and
the batch throughput. Exit status: 0 if every job ended as expected, 1 if not, 2 if there was
no database to run against.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, LiteralString
from uuid import UUID

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from job import (
    Complete,
    CurrentJob,
    Job,
    JobCompletion,
    JobError,
    JobInitializer,
    JobRunner,
    Jobs,
    JobState,
    JobSvcConfig,
    JobTimeoutError,
    RescheduleIn,
    RetryLater,
    RetrySettings,
)
from job import _events as ev
from job.testing._localpg import LocalPostgres, LocalPostgresError

__all__ = ["ENV_DSN", "main", "run_demo"]

ENV_DSN = "JOB_DATABASE_URL"
#: How long (wall clock) the demo waits for its jobs before declaring failure.
WAIT_TIMEOUT = 60.0
#: How often the featured jobs are re-read to report their progress.
POLL_INTERVAL = 0.25
SCHEDULE_DELAY = timedelta(seconds=2)
#: How many batch jobs are awaited at once (each wait takes a pooled connection briefly).
BATCH_WAITERS = 25
RUN_EVENTS = ev.RUN_ENDINGS


class Results:
    """The demo's business table, ``demo_results``, in PostgreSQL's SQL; :class:`SqliteResults`
    is the same in SQLite's. Runners write through ``begin(current_job)``: a transaction that
    commits atomically with the job's outcome."""

    create: LiteralString = """
        CREATE TABLE IF NOT EXISTS demo_results (
            job_id     UUID NOT NULL,
            kind       TEXT NOT NULL,
            result     TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )"""
    insert: LiteralString = "INSERT INTO demo_results (job_id, kind, result) VALUES (%s, %s, %s)"
    select: LiteralString = (
        "SELECT result FROM demo_results WHERE job_id = %s AND kind = %s ORDER BY created_at"
    )
    count_by_kind: LiteralString = (
        "SELECT kind, count(*) FROM demo_results GROUP BY kind ORDER BY kind"
    )
    prune: LiteralString = "DELETE FROM demo_results WHERE created_at < now() - %s"

    def retention(self, value: timedelta) -> Any:
        return value

    def key(self, job_id: UUID) -> Any:
        return job_id

    async def begin(self, current_job: CurrentJob[Any]) -> Any:
        return await current_job.transaction()

    async def run(self, tx: Any, sql: LiteralString, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement in ``tx``; its rows (empty for a write). A DELETE returns its
        row count as ``[(n,)]``."""
        cur = await tx.execute(sql, params)
        if sql.startswith("DELETE"):
            return [(cur.rowcount,)]
        return list(await cur.fetchall()) if cur.description else []

    async def outside(self, jobs: Jobs, sql: LiteralString, params: tuple[Any, ...] = ()) -> Any:
        async with jobs.pool.connection() as conn:
            return await self.run(conn, sql, params)


class SqliteResults(Results):
    create = """
        CREATE TABLE IF NOT EXISTS demo_results (
            job_id     TEXT NOT NULL,
            kind       TEXT NOT NULL,
            result     TEXT NOT NULL,
            created_at REAL NOT NULL DEFAULT (julianday('now'))
        )"""
    insert = "INSERT INTO demo_results (job_id, kind, result) VALUES (?, ?, ?)"
    select = "SELECT result FROM demo_results WHERE job_id = ? AND kind = ? ORDER BY created_at"
    prune = "DELETE FROM demo_results WHERE created_at < julianday('now') - ?"

    def retention(self, value: timedelta) -> Any:
        return value / timedelta(days=1)

    def key(self, job_id: UUID) -> Any:
        return str(job_id)

    async def begin(self, current_job: CurrentJob[Any]) -> Any:
        return await current_job.sqlite_transaction()

    async def run(self, tx: Any, sql: LiteralString, params: tuple[Any, ...] = ()) -> list[Any]:
        if sql.startswith("DELETE"):
            return [(await tx.run_sync(lambda db: db.execute(sql, params).rowcount),)]
        return [tuple(row) for row in await tx.execute(sql, params)]

    async def outside(self, jobs: Jobs, sql: LiteralString, params: tuple[Any, ...] = ()) -> Any:
        async with jobs.sqlite_transaction() as tx:
            return await self.run(tx, sql, params)


def results_for(backend_name: str) -> Results:
    return SqliteResults() if backend_name == "sqlite" else Results()


def say(*parts: object) -> None:
    print(*parts, flush=True)


# -- the job types -------------------------------------------------------------------------


class ChecksumConfig(BaseModel):
    seed: int
    size_bytes: int = Field(default=8 * 1024 * 1024, gt=0)


def checksum_of(config: ChecksumConfig) -> str:
    """sha256 of ``size_bytes`` pseudo-random bytes from ``seed`` (reproducible)."""
    data = random.Random(config.seed).randbytes(config.size_bytes)
    return hashlib.sha256(data).hexdigest()


class ChecksumRunner(JobRunner[ChecksumConfig]):
    async def run(self, current_job: CurrentJob[ChecksumConfig]) -> JobCompletion:
        digest = await anyio.to_thread.run_sync(checksum_of, current_job.config)
        db = results_for(current_job.backend_name)
        tx = await db.begin(current_job)  # commits together with Complete()
        await db.run(tx, db.insert, (db.key(current_job.id), "checksum", digest))
        return Complete()


class ChecksumJob(JobInitializer[ChecksumConfig]):
    job_type = "demo_checksum"

    def init(self, config: ChecksumConfig) -> JobRunner[ChecksumConfig]:
        return ChecksumRunner()


class FlakyConfig(BaseModel):
    succeed_on_attempt: int = Field(default=3, ge=1)
    message: str = "the upstream finally answered"


class FlakyRunner(JobRunner[FlakyConfig]):
    async def run(self, current_job: CurrentJob[FlakyConfig]) -> JobCompletion:
        attempt = current_job.attempt
        if attempt < current_job.config.succeed_on_attempt:
            if attempt % 2 == 1:
                return RetryLater(f"simulated upstream 503 on attempt {attempt}")
            raise ConnectionError(f"simulated connection reset on attempt {attempt}")
        db = results_for(current_job.backend_name)
        tx = await db.begin(current_job)
        result = f"{current_job.config.message} (attempt {attempt})"
        await db.run(tx, db.insert, (db.key(current_job.id), "flaky", result))
        return Complete()


class FlakyJob(JobInitializer[FlakyConfig]):
    job_type = "demo_flaky"

    def retry_settings(self) -> RetrySettings:
        # A retry that starts late (a busy machine) must not reset the attempt counter here:
        # the runner decides by attempt number, and the demo expects exactly three runs.
        return RetrySettings(
            n_attempts=5,
            min_backoff=timedelta(milliseconds=200),
            max_backoff=timedelta(seconds=2),
            attempt_reset_after_backoff_multiples=1000,
        )

    def init(self, config: FlakyConfig) -> JobRunner[FlakyConfig]:
        return FlakyRunner()


class ReportConfig(BaseModel):
    title: str = "demo_results rows by kind"


class ReportRunner(JobRunner[ReportConfig]):
    async def run(self, current_job: CurrentJob[ReportConfig]) -> JobCompletion:
        db = results_for(current_job.backend_name)
        tx = await db.begin(current_job)
        counts = ", ".join(f"{kind}={n}" for kind, n in await db.run(tx, db.count_by_kind))
        summary = f"{current_job.config.title}: {counts or 'none'}"
        await db.run(tx, db.insert, (db.key(current_job.id), "report", summary))
        return Complete()


class ReportJob(JobInitializer[ReportConfig]):
    job_type = "demo_report"

    def init(self, config: ReportConfig) -> JobRunner[ReportConfig]:
        return ReportRunner()


class CleanupConfig(BaseModel):
    retention: timedelta = timedelta(hours=1)
    passes: int = Field(default=2, ge=1)
    interval: timedelta = timedelta(seconds=1)


class CleanupRunner(JobRunner[CleanupConfig]):
    """Prunes old ``demo_results`` rows; counts its passes in the same table, atomically."""

    async def run(self, current_job: CurrentJob[CleanupConfig]) -> JobCompletion:
        cfg = current_job.config
        db = results_for(current_job.backend_name)
        tx = await db.begin(current_job)
        ((pruned,),) = await db.run(tx, db.prune, (db.retention(cfg.retention),))
        key = db.key(current_job.id)
        done = len(await db.run(tx, db.select, (key, "cleanup")))
        note = f"pass {done + 1}: pruned {pruned} row(s)"
        await db.run(tx, db.insert, (key, "cleanup", note))
        if done + 1 < cfg.passes:
            return RescheduleIn(cfg.interval)
        return Complete()


class CleanupJob(JobInitializer[CleanupConfig]):
    job_type = "demo_cleanup"

    def init(self, config: CleanupConfig) -> JobRunner[CleanupConfig]:
        return CleanupRunner()


class BatchConfig(BaseModel):
    n: int = Field(ge=0)


def count_primes(limit: int) -> int:
    """Primes below ``limit``, by a small sieve: a few hundred microseconds of real work."""
    sieve = bytearray([1]) * max(limit, 2)
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return sum(sieve)


class BatchRunner(JobRunner[BatchConfig]):
    async def run(self, current_job: CurrentJob[BatchConfig]) -> JobCompletion:
        count_primes(10_000 + current_job.config.n)
        return Complete()


class BatchJob(JobInitializer[BatchConfig]):
    job_type = "demo_batch"

    def init(self, config: BatchConfig) -> JobRunner[BatchConfig]:
        return BatchRunner()


# -- watching jobs ---------------------------------------------------------------------------


def short_id(job_id: UUID) -> str:
    """The last 8 hex digits: the random part of a UUIDv7 (the head is the timestamp)."""
    return job_id.hex[-8:]


def run_count(job: Job[Any]) -> int:
    return sum(1 for e in job.events if e.type in RUN_EVENTS)


def _due_in(scheduled_at: str, now: datetime) -> str:
    seconds = (datetime.fromisoformat(scheduled_at) - now).total_seconds()
    return f"due in {seconds:.1f}s" if seconds > 0.05 else "due now"


def describe(job: Job[Any], now: datetime) -> str:
    """One phrase for where the job is, read from its state and its latest events."""
    if job.state.is_terminal or job.state is JobState.RUNNING:
        return f"{job.state.value} (attempt {job.attempt})" if job.attempt else job.state.value
    last, before = job.events[-1], job.events[-2] if len(job.events) > 1 else None
    due = _due_in(str(last.data.get("scheduled_at")), now)
    if before is not None and before.type == ev.EXECUTION_ERRORED:
        failed = before.data.get("attempt")
        return f"attempt {failed} failed ({before.data.get('error')}); retry {due}"
    if before is not None and before.type == ev.EXECUTION_COMPLETED:
        return f"run done, rescheduled itself: {due}"
    return f"pending (attempt {job.attempt}), {due}"


@dataclass
class Tracked:
    """A featured job and what the demo expects of it."""

    label: str
    job_id: UUID
    expected_runs: int
    latest: Job[Any] | None = None
    seen: tuple[str, int] = ("", 0)

    @property
    def done(self) -> bool:
        return self.latest is not None and self.latest.is_terminal


@dataclass
class Batch:
    ids: list[UUID]
    spawned_at: datetime
    finished: list[Job[Any]] = field(default_factory=list)


@dataclass
class Check:
    what: str
    ok: bool


class Demo:
    """One run of the demo; registers the demo job types on an opened, not yet polling service."""

    def __init__(self, jobs: Jobs, n_jobs: int) -> None:
        self.db = results_for(jobs.backend_name)
        self.jobs = jobs
        self.n_jobs = n_jobs
        self.t0 = time.monotonic()
        self.tracked: list[Tracked] = []
        self.checks: list[Check] = []
        self.checksum_config = ChecksumConfig(seed=42)
        self.batch: Batch | None = None
        self.checksum = jobs.add_initializer(ChecksumJob())
        self.flaky = jobs.add_initializer(FlakyJob())
        self.report = jobs.add_initializer(ReportJob())
        self.cleanup = jobs.add_initializer(CleanupJob())
        self.batch_spawner = jobs.add_initializer(BatchJob())

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.t0:5.2f}s]"

    def find(self, label: str) -> Tracked:
        return next(t for t in self.tracked if t.label == label)

    def check(self, what: str, ok: bool) -> None:
        self.checks.append(Check(what, ok))

    # -- setup -----------------------------------------------------------------------------

    async def prepare(self) -> None:
        await self.db.outside(self.jobs, self.db.create)
        await self.jobs.start_poll()
        say("registered demo_checksum, demo_flaky, demo_report, demo_cleanup, demo_batch;")
        say(f"polling as worker {short_id(self.jobs.instance_id)}\n")
        self.t0 = time.monotonic()

    async def spawn_featured(self) -> None:
        checksum = await self.checksum.spawn(self.checksum_config)
        size = self.checksum_config.size_bytes
        self.track("checksum", checksum, 1, f"sha256 over {size / 2**20:g} MiB of generated data")
        flaky = await self.flaky.spawn(FlakyConfig())
        self.track("flaky", flaky, 3, "fails twice, then succeeds (200 ms backoff)")
        report = await self.report.spawn(ReportConfig(), delay=SCHEDULE_DELAY)
        self.track("report", report, 1, f"scheduled with delay={SCHEDULE_DELAY.total_seconds()}s")
        await self.spawn_singleton()

    async def spawn_singleton(self) -> None:
        first = await self.cleanup.spawn_unique(CleanupConfig())
        second = await self.cleanup.spawn_unique(CleanupConfig(passes=99))
        self.track("cleanup", first.job, 2, f"spawn_unique -> created={first.created}")
        say(
            f"{self.stamp()} {'cleanup':<9} {short_id(second.job.id)}  spawn_unique again ->"
            f" created={second.created}, same job: {second.job.id == first.job.id}"
        )
        self.check(
            "second spawn_unique returned the same cleanup job with created=False",
            second.job.id == first.job.id and not second.created,
        )

    def track(self, label: str, job: Job[Any], expected_runs: int, note: str) -> None:
        self.tracked.append(Tracked(label, job.id, expected_runs))
        say(f"{self.stamp()} {label:<9} {short_id(job.id)}  spawned: {note}")

    async def spawn_batch(self) -> None:
        spawned_at = self.jobs.clock.now()
        started = time.perf_counter()
        created = await self.batch_spawner.spawn_many(BatchConfig(n=i) for i in range(self.n_jobs))
        took = (time.perf_counter() - started) * 1000
        self.batch = Batch([job.id for job in created], spawned_at)
        say(
            f"{self.stamp()} {'batch':<9} {'-':<8}  spawned {len(created)} jobs with one"
            f" spawn_many call in {took:.1f} ms"
        )

    # -- watching --------------------------------------------------------------------------

    async def watch_featured(self, deadline: float) -> None:
        while True:
            for tracked in self.tracked:
                await self.refresh(tracked)
            if all(t.done for t in self.tracked) or time.monotonic() > deadline:
                return
            await anyio.sleep(POLL_INTERVAL)

    async def refresh(self, tracked: Tracked) -> None:
        job = await self.jobs.find(tracked.job_id)
        tracked.latest = job
        key = (job.state.value, len(job.events))
        if key != tracked.seen:
            tracked.seen = key
            text = describe(job, self.jobs.clock.now())
            say(f"{self.stamp()} {tracked.label:<9} {short_id(job.id)}  {text}")

    async def await_batch(self, deadline: float) -> None:
        assert self.batch is not None
        ids, total, quarter = self.batch.ids, len(self.batch.ids), 0
        for start in range(0, total, BATCH_WAITERS):
            chunk = ids[start : start + BATCH_WAITERS]
            waits = (self.wait_one(job_id, deadline) for job_id in chunk)
            self.batch.finished += await asyncio.gather(*waits)
            done = len(self.batch.finished)
            if done * 4 // total > quarter or done == total:
                quarter = done * 4 // total
                say(f"{self.stamp()} {'batch':<9} {'-':<8}  {done}/{total} finished")

    async def wait_one(self, job_id: UUID, deadline: float) -> Job[Any]:
        try:
            remaining = max(deadline - time.monotonic(), 0.01)
            return await self.jobs.await_completion(job_id, timeout=remaining)
        except JobTimeoutError:
            return await self.jobs.find(job_id)

    async def watch(self) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.watch_featured, deadline)
            tg.start_soon(self.await_batch, deadline)

    # -- verdict ---------------------------------------------------------------------------

    async def verify(self) -> None:
        for tracked in self.tracked:
            job = tracked.latest
            assert job is not None
            self.check(
                f"{tracked.label} completed after {tracked.expected_runs} run(s)",
                job.state is JobState.COMPLETED and run_count(job) == tracked.expected_runs,
            )
        await self.verify_checksum()
        self.verify_schedule()
        assert self.batch is not None
        completed = sum(1 for j in self.batch.finished if j.state is JobState.COMPLETED)
        self.check(f"all {len(self.batch.ids)} batch jobs completed", completed == self.n_jobs)

    async def verify_checksum(self) -> None:
        stored = await self.results(self.find("checksum").job_id, "checksum")
        expected = checksum_of(self.checksum_config)
        say(f"\nchecksum stored in demo_results: {stored[0] if stored else None}")
        self.check("stored checksum matches a local recomputation", stored == [expected])
        report = await self.results(self.find("report").job_id, "report")
        say(f"report stored in demo_results:   {report[0] if report else None}")

    def verify_schedule(self) -> None:
        job = self.find("report").latest
        assert job is not None
        ran = [e.recorded_at for e in job.events if e.type == ev.EXECUTION_COMPLETED]
        delay = SCHEDULE_DELAY.total_seconds()
        if not ran:
            self.check(f"scheduled report ran, {delay}s after it was spawned", False)
            return
        late = (ran[0] - job.created_at).total_seconds()
        say(f"report ran {late:.2f}s after it was spawned (delay {delay}s)")
        self.check(f"scheduled report ran, not before its {delay}s delay", late >= delay)

    async def results(self, job_id: UUID, kind: str) -> list[str]:
        rows = await self.db.outside(self.jobs, self.db.select, (self.db.key(job_id), kind))
        return [row[0] for row in rows]

    # -- the final table -------------------------------------------------------------------

    def print_table(self) -> None:
        say(f"\n{'job':<9} {'id':<8}  {'final state':<15} {'runs':>4}  last error")
        say(f"{'-' * 9} {'-' * 8}  {'-' * 15} {'-' * 4}  {'-' * 40}")
        for tracked in self.tracked:
            assert tracked.latest is not None
            self.print_row(tracked.label, tracked.latest)
        assert self.batch is not None
        states: dict[str, int] = {}
        for job in self.batch.finished:
            states[job.state.value] = states.get(job.state.value, 0) + 1
            if job.state is not JobState.COMPLETED:
                self.print_row("batch", job)
        summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        runs = sum(run_count(j) for j in self.batch.finished)
        say(f"{'batch':<9} {'x' + str(len(self.batch.ids)):<8}  {summary:<15} {runs:>4}  -")

    def print_row(self, label: str, job: Job[Any]) -> None:
        error = job.last_error or "-"
        say(f"{label:<9} {short_id(job.id)}  {job.state.value:<15} {run_count(job):>4}  {error}")

    def print_throughput(self) -> None:
        assert self.batch is not None
        ends = [
            e.recorded_at
            for j in self.batch.finished
            for e in j.events
            if e.type == ev.JOB_COMPLETED
        ]
        elapsed = (max(ends) - self.batch.spawned_at).total_seconds() if ends else 0.0
        rate = len(self.batch.ids) / elapsed if elapsed > 0 else 0.0
        say(
            f"\nthroughput: {len(self.batch.ids)} batch jobs from spawn_many to the last"
            f" completion in {elapsed:.2f}s = {rate:.1f} jobs/s"
        )
        # Say what the figure is, so nobody compares it with a no-op benchmark.
        say(
            "  (one worker process, default poller settings, the batch running beside the"
            " other demo jobs; each batch job sieves primes below ~10,000 on the event"
            " loop, so this is that work plus the library's overhead, not the overhead"
            " alone: bench/RESULTS.md measures that, with no-op jobs)"
        )

    def print_checks(self) -> bool:
        say("\nchecks:")
        for check in self.checks:
            say(f"  [{'ok' if check.ok else 'FAIL'}] {check.what}")
        return all(check.ok for check in self.checks)


async def run_demo(config: JobSvcConfig, n_jobs: int) -> int:
    """Run the demo on ``config``'s database; 0 if every job ended as expected, else 1."""
    jobs = await Jobs.init(config)
    say(f"job service started on {jobs.backend_name} (migrations applied)")
    try:
        demo = Demo(jobs, n_jobs)
        await demo.prepare()
        await demo.spawn_featured()
        await demo.spawn_batch()
        await demo.watch()
        await demo.verify()
        demo.print_table()
        demo.print_throughput()
        ok = demo.print_checks()
    finally:
        await jobs.shutdown()
        say("\njob service shut down")
    say("demo OK" if ok else "demo FAILED: some jobs did not end as expected")
    return 0 if ok else 1


# -- entry point -----------------------------------------------------------------------------


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, without its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "the given database"
    host = params.get("host") or "localhost"
    return f"database {params.get('dbname', '?')!s} on {host}:{params.get('port') or 5432}"


def run_against(config: JobSvcConfig, n_jobs: int) -> int:
    try:
        return asyncio.run(run_demo(config, n_jobs))
    except JobError as exc:
        say(f"the demo could not use the database: {exc}")
        return 2


def main(
    dsn: str | None,
    n_jobs: int,
    *,
    postgres: bool = False,
    sqlite_path: str | None = None,
) -> int:
    """``python -m job demo``: on an embedded SQLite file (the default: a temporary one, or
    ``sqlite_path``), or on PostgreSQL: ``dsn`` / ``$JOB_DATABASE_URL``, or a throwaway local
    server with ``postgres``."""
    logging.basicConfig(level=logging.WARNING, format="    (log) %(levelname)s %(message)s")
    dsn = dsn or os.environ.get(ENV_DSN)
    if dsn:
        say(f"backend: PostgreSQL, {describe_dsn(dsn)}")
        return run_against(JobSvcConfig(pg_con=dsn, max_connections=20), n_jobs)
    if postgres:
        return _on_local_postgres(n_jobs)
    if sqlite_path is not None:
        say(f"backend: SQLite, file {sqlite_path}")
        return run_against(JobSvcConfig(sqlite_path=sqlite_path), n_jobs)
    with tempfile.TemporaryDirectory(prefix="job-demo-") as folder:
        path = os.path.join(folder, "jobs.sqlite3")
        say(f"backend: SQLite, a temporary file {path} (no server; --postgres for PostgreSQL)")
        return run_against(JobSvcConfig(sqlite_path=path), n_jobs)


def _on_local_postgres(n_jobs: int) -> int:
    say("backend: PostgreSQL, starting a throwaway local server...")
    local = LocalPostgres()
    try:
        local.start()
    except LocalPostgresError as exc:
        local.stop()
        say(f"cannot start a local PostgreSQL server: {exc}")
        return 2
    try:
        say(f"local PostgreSQL is up on 127.0.0.1:{local.port} (data in {local.root})")
        return run_against(JobSvcConfig(pg_con=local.dsn(), max_connections=20), n_jobs)
    finally:
        local.stop()
        say("local PostgreSQL stopped and its data directory removed")
