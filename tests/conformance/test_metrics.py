"""OpenTelemetry metrics (``job._metrics``), read back with the SDK's InMemoryMetricReader.

The global MeterProvider can be set only once per process, so each test hands its own
provider to the library with ``_metrics.use_meter_provider`` (the ``reader`` fixture) and
gives the global one back afterwards. Every metric is documented in docs/telemetry.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import psycopg
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from job import (
    Cancel,
    Complete,
    Discard,
    DuplicateJobError,
    JobNotFoundError,
    JobRunner,
    Jobs,
    JobSpec,
    KeyedJobInitializer,
    RescheduleIn,
    ResidentJobInitializer,
    ResidentJobRunner,
    RetrySettings,
    _metrics,
)
from job.testing import drain
from tests.fixtures.database import PostgresTestDatabase, TestDatabase
from tests.support import (
    Cfg,
    FnBatchedInitializer,
    FnInitializer,
    complete,
    runner_sql,
    service_sql,
)

pytestmark = pytest.mark.anyio

NO_JITTER_1S = RetrySettings(
    min_backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=1), backoff_jitter_pct=0
)


class QueuedInitializer(FnInitializer):
    """An FnInitializer whose type belongs to the named queue ``queue_name``."""

    def __init__(self, job_type: str, fn: Any, queue_name: str, **kwargs: Any) -> None:
        super().__init__(job_type, fn, **kwargs)
        self.queue_name = queue_name

    def queue(self) -> str:
        return self.queue_name


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    _metrics.use_meter_provider(provider)
    try:
        yield reader
    finally:
        _metrics.use_meter_provider(None)
        provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, data point) of every point of metric ``name`` collected now."""
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
    return found


def units(reader: InMemoryMetricReader) -> dict[str, str]:
    data = reader.get_metrics_data()
    return {
        m.name: m.unit or ""
        for r in (data.resource_metrics if data is not None else ())
        for s in r.scope_metrics
        for m in s.metrics
    }


def by(reader: InMemoryMetricReader, name: str, *keys: str) -> dict[tuple[Any, ...], Any]:
    """Metric ``name``'s values (counts for a histogram) keyed by the attributes ``keys``."""
    out: dict[tuple[Any, ...], Any] = {}
    for attrs, point in points(reader, name):
        key = tuple(attrs.get(k) for k in keys)
        assert key not in out, f"two points of {name} for {key}"
        out[key] = point.count if hasattr(point, "bucket_counts") else point.value
    return out


@asynccontextmanager
async def caller_transaction(jobs: Jobs, database: TestDatabase) -> AsyncIterator[Any]:
    """The caller's own transaction on either backend, rolled back on an exception."""
    if jobs.backend_name == "postgres":
        assert isinstance(database, PostgresTestDatabase)
        conn = await psycopg.AsyncConnection.connect(database.dsn)
        async with conn, conn.transaction():
            yield conn
    else:
        async with jobs.sqlite_transaction() as tx:
            yield tx


class RollbackError(Exception):
    pass


async def test_spawns_count_sent_messages_per_type_and_queue(make_jobs, reader):
    """messaging.client.sent.messages counts the jobs each spawn created, by type and named
    queue: not the dedup-skipped specs, not the existing holder of a unique key, not a spawn
    that failed."""
    jobs = await make_jobs()
    plain = jobs.add_initializer(FnInitializer("m_plain", complete))
    mail = jobs.add_initializer(QueuedInitializer("m_mail", complete, "mail"))

    first = await plain.spawn(Cfg(n=1))
    result = await plain.spawn_many(
        [JobSpec(Cfg(n=2), dedup_key="k"), JobSpec(Cfg(n=3), dedup_key="k"), Cfg(n=4)]
    )
    assert len(result) == 2 and len(result.skipped) == 1
    with pytest.raises(DuplicateJobError):
        await plain.spawn(Cfg(n=5), id=first.id)
    assert (await mail.spawn_unique(Cfg(), key="only")).created
    assert not (await mail.spawn_unique(Cfg(), key="only")).created
    await plain.spawn_many([])

    assert by(reader, _metrics.SENT_MESSAGES, "job.type") == {("m_plain",): 3, ("m_mail",): 1}
    attrs = {a["job.type"]: a for a, _ in points(reader, _metrics.SENT_MESSAGES)}
    assert attrs["m_mail"] == {
        "messaging.system": "job",
        "messaging.destination.name": "mail",
        "messaging.operation.name": "spawn",
        "job.type": "m_mail",
    }
    assert attrs["m_plain"]["messaging.destination.name"] == "default"
    assert units(reader)[_metrics.SENT_MESSAGES] == "{message}"


class Resident(ResidentJobInitializer[Cfg]):
    job_type = "m_resident"

    def init(self, config: Cfg) -> ResidentJobRunner[Cfg]:
        raise AssertionError("never run here")


class Keyed(KeyedJobInitializer[Cfg]):
    job_type = "m_keyed"

    def init(self, config: Cfg) -> JobRunner[Cfg]:
        raise AssertionError("never run here")


async def test_resident_and_keyed_spawns_count_only_a_created_job(make_jobs, reader):
    jobs = await make_jobs()
    resident = jobs.add_initializer(Resident())
    keyed = jobs.add_initializer(Keyed())
    assert await resident.spawn(Cfg(n=1)) == await resident.spawn(Cfg(n=2))
    await keyed.spawn("a", Cfg())
    await keyed.spawn("a", Cfg())
    await keyed.spawn("b", Cfg())
    assert by(reader, _metrics.SENT_MESSAGES, "job.type") == {
        ("m_resident",): 1,
        ("m_keyed",): 2,
    }


async def test_a_spawn_in_the_callers_transaction_counts_when_the_call_returns(
    make_jobs, job_database, reader
):
    """With conn=, the spawn is counted when spawn() returns, before the caller commits: a
    rollback afterwards does not take it back (documented)."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("m_tx", complete))
    rolled_back = []

    async def spawn_then_roll_back() -> None:
        async with caller_transaction(jobs, job_database) as conn:
            rolled_back.append(await spawner.spawn(Cfg(n=1), conn=conn))
            assert by(reader, _metrics.SENT_MESSAGES, "job.type") == {("m_tx",): 1}
            raise RollbackError

    with pytest.raises(RollbackError):
        await spawn_then_roll_back()
    with pytest.raises(JobNotFoundError):
        await jobs.find(rolled_back[0].id)
    assert await spawner.spawn_many([Cfg(n=2), Cfg(n=3)])
    assert by(reader, _metrics.SENT_MESSAGES, "job.type") == {("m_tx",): 3}


async def test_a_retry_then_a_completion(make_jobs, manual_clock, reader):
    """A job failing once, then completing: 2 runs claimed, one retried, one completed, two
    durations, all under its type and named queue."""
    clock, controller = manual_clock
    calls = []

    async def run(current):
        calls.append(current.attempt)
        if current.attempt == 1:
            raise RuntimeError("once")
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(QueuedInitializer("m_retry", run, "q1", retry=NO_JITTER_1S))
    await jobs.start_poll()
    await spawner.spawn(Cfg())
    assert (await drain(jobs)).pending == 1
    assert by(reader, _metrics.RUNS_FINISHED, "job.outcome") == {("retried",): 1}
    await controller.advance(timedelta(seconds=1))
    assert (await drain(jobs)).completed == 1
    assert calls == [1, 2]

    assert by(reader, _metrics.CONSUMED_MESSAGES, "job.type", "messaging.operation.name") == {
        ("m_retry", "claim"): 2
    }
    assert by(reader, _metrics.RUNS_FINISHED, "job.type", "job.outcome") == {
        ("m_retry", "retried"): 1,
        ("m_retry", "completed"): 1,
    }
    ((attrs, duration),) = points(reader, _metrics.PROCESS_DURATION)
    assert attrs == {
        "messaging.system": "job",
        "messaging.destination.name": "q1",
        "messaging.operation.name": "process",
        "job.type": "m_retry",
    }
    assert duration.count == 2
    assert 0 <= duration.sum < 10
    assert {
        _metrics.SENT_MESSAGES: "{message}",
        _metrics.CONSUMED_MESSAGES: "{message}",
        _metrics.PROCESS_DURATION: "s",
        _metrics.RUNS_FINISHED: "{run}",
    }.items() <= units(reader).items()
    assert _metrics._runs == {}  # every run's entry is gone with its task


async def test_every_outcome_is_counted_once(make_jobs, reader):
    """errored (out of attempts, Discard), cancelled, rescheduled: one count per run."""
    rescheduled: set[Any] = set()

    async def run(current):
        kind = current.config.note
        if kind == "raise":
            raise ValueError("no")
        if kind == "discard":
            return Discard()
        if kind == "cancel":
            return Cancel()
        if kind == "resched" and current.id not in rescheduled:
            rescheduled.add(current.id)
            return RescheduleIn(timedelta(0))
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(
        FnInitializer("m_outcomes", run, retry=RetrySettings(n_attempts=1))
    )
    notes = ["raise", "discard", "cancel", "resched", "ok", "ok"]
    await spawner.spawn_many([Cfg(note=n) for n in notes])
    await jobs.start_poll()
    result = await drain(jobs)
    assert result.runs == 7

    assert by(reader, _metrics.RUNS_FINISHED, "job.outcome") == {
        ("errored",): 2,
        ("cancelled",): 1,
        ("rescheduled",): 1,
        ("completed",): 3,
    }
    assert by(reader, _metrics.CONSUMED_MESSAGES, "job.type") == {("m_outcomes",): 7}
    assert by(reader, _metrics.PROCESS_DURATION, "job.type") == {("m_outcomes",): 7}
    assert by(reader, _metrics.SENT_MESSAGES, "job.type") == {("m_outcomes",): 6}


async def test_a_rate_limited_run_is_its_own_outcome(make_jobs, manual_clock, reader):
    """A run stopped by an exhausted rate limit ends rate_limited (neither retried nor
    failed); the one that got the token completes."""
    clock, _ = manual_clock

    async def run(current):
        await current.rate_limit("m_smtp", max_wait=timedelta(0))
        return Complete()

    jobs = await make_jobs(clock=clock)
    await jobs.add_rate_limit("m_smtp", limit=1, per=timedelta(hours=1))
    spawner = jobs.add_initializer(FnInitializer("m_rl", run))
    await spawner.spawn_many([Cfg(n=1), Cfg(n=2)])
    await jobs.start_poll()
    result = await drain(jobs)
    assert (result.completed, result.pending) == (1, 1)
    assert by(reader, _metrics.RUNS_FINISHED, "job.outcome") == {
        ("completed",): 1,
        ("rate_limited",): 1,
    }


async def test_an_outcome_committed_with_the_runners_transaction(make_jobs, reader):
    """The outcome written in the runner's own transaction (not by the batched writer) is
    counted once it committed."""
    jobs = await make_jobs()
    await service_sql(jobs, "CREATE TABLE metrics_effects (n integer)")

    async def run(current):
        await runner_sql(current, "INSERT INTO metrics_effects (n) VALUES (%s)", (1,))
        return Complete()

    spawner = jobs.add_initializer(FnInitializer("m_in_tx", run))
    await spawner.spawn_many([Cfg(), Cfg()])
    await jobs.start_poll()
    assert (await drain(jobs)).completed == 2
    assert await service_sql(jobs, "SELECT count(*) FROM metrics_effects") == [(2,)]
    assert by(reader, _metrics.RUNS_FINISHED, "job.type", "job.outcome") == {
        ("m_in_tx", "completed"): 2
    }


async def test_a_batch_is_one_run_of_many_messages(make_jobs, reader):
    """A batch: every item claimed and given its outcome, one duration per run_batch."""
    sizes = []

    async def run_batch(batch):
        sizes.append(len(batch.items))
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnBatchedInitializer("m_batch", run_batch, batch_size=10))
    await spawner.spawn_many([Cfg(n=i) for i in range(3)])
    await jobs.start_poll()
    assert (await drain(jobs)).completed == 3
    assert sum(sizes) == 3

    assert by(reader, _metrics.CONSUMED_MESSAGES, "job.type") == {("m_batch",): 3}
    assert by(reader, _metrics.RUNS_FINISHED, "job.outcome") == {("completed",): 3}
    assert by(reader, _metrics.PROCESS_DURATION, "job.type") == {("m_batch",): len(sizes)}
    assert _metrics._runs == {}


async def test_a_batch_committed_with_its_transaction(make_jobs, reader):
    """A batch whose items' outcomes commit with the batch's own transaction."""
    jobs = await make_jobs()
    await service_sql(jobs, "CREATE TABLE metrics_batch_effects (n integer)")

    async def run_batch(batch):
        await runner_sql(batch, "INSERT INTO metrics_batch_effects (n) VALUES (%s)", (1,))
        return Complete()

    spawner = jobs.add_initializer(FnBatchedInitializer("m_batch_tx", run_batch))
    await spawner.spawn_many([Cfg(n=i) for i in range(4)])
    await jobs.start_poll()
    assert (await drain(jobs)).completed == 4
    assert by(reader, _metrics.RUNS_FINISHED, "job.type", "job.outcome") == {
        ("m_batch_tx", "completed"): 4
    }


async def test_with_no_provider_nothing_is_created_or_kept(make_jobs):
    """With the API's no-op provider, no instrument is made and no run is followed."""
    _metrics.use_meter_provider(NoOpMeterProvider())
    try:
        seen = []

        async def run(current):
            seen.append(len(_metrics._runs))  # a followed run would be in there by now
            return Complete()

        jobs = await make_jobs()
        spawner = jobs.add_initializer(FnInitializer("m_off", run))
        await spawner.spawn_many([Cfg(), Cfg()])
        await jobs.start_poll()
        assert (await drain(jobs)).completed == 2
        assert seen == [0, 0]
        assert not _metrics.enabled()
        assert _metrics._instruments is None
    finally:
        _metrics.use_meter_provider(None)


async def test_a_provider_installed_later_is_picked_up(make_jobs):
    """Off at first; a provider appearing later is used from the next look on (at most
    RECHECK_SECONDS later; use_meter_provider/refresh look at once)."""
    _metrics.use_meter_provider(NoOpMeterProvider())
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        jobs = await make_jobs()
        spawner = jobs.add_initializer(FnInitializer("m_late", complete))
        await spawner.spawn(Cfg())
        assert _metrics._instruments is None
        _metrics.use_meter_provider(provider)
        await spawner.spawn(Cfg())
        assert by(reader, _metrics.SENT_MESSAGES, "job.type") == {("m_late",): 1}
    finally:
        _metrics.use_meter_provider(None)
        provider.shutdown()


async def test_queue_gauges_report_the_sampled_depth_and_lag(make_jobs, manual_clock, reader):
    """job.queue.depth (pending / running) and job.queue.lag per type, as last sampled; a
    registered type with no live job reports 0; a sampler that ends is no longer read."""
    clock, controller = manual_clock
    release, both_running = anyio.Event(), anyio.Event()
    started: list[int] = []

    async def hold(current):
        started.append(current.config.n)
        if len(started) == 2:
            both_running.set()
        await release.wait()
        return Complete()

    jobs = await make_jobs(clock=clock)
    held = jobs.add_initializer(QueuedInitializer("m_depth", hold, "q_depth"))
    jobs.add_initializer(FnInitializer("m_idle", complete))
    await held.spawn_many([Cfg(n=1), Cfg(n=2)])
    await held.spawn(Cfg(n=3), delay=timedelta(hours=1))
    await controller.advance(timedelta(seconds=30))

    def depth() -> dict[tuple[Any, ...], Any]:
        return by(reader, _metrics.QUEUE_DEPTH, "job.type", "job.state")

    def lag() -> dict[tuple[Any, ...], Any]:
        return by(reader, _metrics.QUEUE_LAG, "job.type")

    sampler = _metrics.DepthSampler(jobs._backend, jobs._registry, jobs.clock, interval=3600)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler.run)
        await sampler.refresh()
        assert depth() == {
            ("m_depth", "pending"): 3,
            ("m_depth", "running"): 0,
            ("m_idle", "pending"): 0,
            ("m_idle", "running"): 0,
        }
        assert lag() == {("m_depth",): pytest.approx(30, abs=0.01), ("m_idle",): 0}
        attrs = {
            (a["job.type"], a.get("job.state")): a for a, _ in points(reader, _metrics.QUEUE_DEPTH)
        }
        assert attrs["m_depth", "running"] == {
            "messaging.system": "job",
            "messaging.destination.name": "q_depth",
            "job.type": "m_depth",
            "job.state": "running",
        }

        await jobs.start_poll()
        with anyio.fail_after(10):
            await both_running.wait()
        await sampler.refresh()
        assert depth()["m_depth", "running"] == 2
        assert depth()["m_depth", "pending"] == 1
        assert lag()["m_depth",] == 0  # the one pending job is not due yet
        release.set()
        await drain(jobs)
        await sampler.refresh()
        assert depth()["m_depth", "running"] == 0
        assert units(reader)[_metrics.QUEUE_DEPTH] == "{job}"
        assert units(reader)[_metrics.QUEUE_LAG] == "s"
        assert sampler in _metrics._samplers
        tg.cancel_scope.cancel()
    assert sampler not in _metrics._samplers  # its figures are no longer reported


async def test_a_failed_depth_read_reports_nothing(make_jobs, reader, monkeypatch, caplog):
    """After a failed read the gauges report nothing (no stale figures) until a read
    succeeds; one warning per outage."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("m_fail", complete))
    await spawner.spawn(Cfg())
    sampler = _metrics.DepthSampler(jobs._backend, jobs._registry, jobs.clock, interval=3600)
    working = jobs._backend.admin_queue_depths

    async def broken(now):
        raise RuntimeError("database gone")

    def warnings() -> int:
        return sum(r.name == "job.metrics" and r.levelname == "WARNING" for r in caplog.records)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler.run)
        await sampler.refresh()
        assert by(reader, _metrics.QUEUE_DEPTH, "job.type", "job.state")["m_fail", "pending"] == 1
        monkeypatch.setattr(jobs._backend, "admin_queue_depths", broken)
        await sampler.refresh()
        await sampler.refresh()
        assert points(reader, _metrics.QUEUE_DEPTH) == []
        assert points(reader, _metrics.QUEUE_LAG) == []
        assert warnings() == 1
        monkeypatch.setattr(jobs._backend, "admin_queue_depths", working)
        await sampler.refresh()
        assert by(reader, _metrics.QUEUE_DEPTH, "job.type", "job.state")["m_fail", "pending"] == 1
        monkeypatch.setattr(jobs._backend, "admin_queue_depths", broken)
        await sampler.refresh()
        assert warnings() == 2  # a new outage
        tg.cancel_scope.cancel()


async def test_of_two_samplers_the_freshest_figures_are_reported(make_jobs, reader):
    """Two services on one database in one process: the gauges report one point per type and
    state, the most recently read one (whichever sampler started first)."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("m_two", complete))
    first = _metrics.DepthSampler(jobs._backend, jobs._registry, jobs.clock, interval=3600)
    second = _metrics.DepthSampler(jobs._backend, jobs._registry, jobs.clock, interval=3600)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        tg.start_soon(second.run)
        await first.refresh()
        await second.refresh()
        await spawner.spawn(Cfg())
        await first.refresh()  # the first one is fresher now, though listed first
        assert by(reader, _metrics.QUEUE_DEPTH, "job.type", "job.state")["m_two", "pending"] == 1
        await spawner.spawn(Cfg())
        await second.refresh()
        assert by(reader, _metrics.QUEUE_DEPTH, "job.type", "job.state")["m_two", "pending"] == 2
        tg.cancel_scope.cancel()
