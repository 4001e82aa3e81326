"""OpenTelemetry spans emitted by the service, checked with the SDK's in-memory exporter.

The library takes its tracer at import (``trace.get_tracer("job")``): a ProxyTracer that
delegates to whichever global provider is set later. The global provider can be set only once
per process, so one session fixture installs it and every test clears the exporter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import timedelta

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from job import (
    ClockHandle,
    Complete,
    JobSpec,
    JobState,
    RescheduleIn,
    RetrySettings,
)
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer

pytestmark = pytest.mark.anyio

user_tracer = trace.get_tracer("tests.telemetry")


class _EndSignal(SpanProcessor):
    """Wakes tests waiting for a span to end (registered after the exporting processor)."""

    def __init__(self) -> None:
        self.waiters: list[anyio.Event] = []

    def on_end(self, span: ReadableSpan) -> None:
        waiters, self.waiters = self.waiters, []
        for event in waiters:
            event.set()


class Spans:
    def __init__(self, exporter: InMemorySpanExporter, signal: _EndSignal) -> None:
        self._exporter = exporter
        self._signal = signal

    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    async def wait_for(
        self,
        name: str,
        where: Callable[[ReadableSpan], bool] = lambda s: True,
        *,
        timeout: float = 10,
    ) -> ReadableSpan:
        """The first finished span called ``name`` matching ``where``; waits for it to end."""
        with anyio.fail_after(timeout):
            while True:
                for span in self.named(name):
                    if where(span):
                        return span
                event = anyio.Event()
                self._signal.waiters.append(event)
                await event.wait()


@pytest.fixture(scope="session")
def _otel() -> tuple[InMemorySpanExporter, _EndSignal]:
    exporter = InMemorySpanExporter()
    signal = _EndSignal()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            pytest.skip("a non-SDK global tracer provider is already installed")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(signal)
    return exporter, signal


@pytest.fixture
def spans(_otel: tuple[InMemorySpanExporter, _EndSignal]) -> Iterator[Spans]:
    exporter, signal = _otel
    exporter.clear()
    yield Spans(exporter, signal)
    exporter.clear()


def _span_id(span: ReadableSpan | trace.Span) -> int:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.span_id


def _trace_id(span: ReadableSpan | trace.Span) -> int:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.trace_id


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _for_job(job_id: object, **attrs: object) -> Callable[[ReadableSpan], bool]:
    def match(span: ReadableSpan) -> bool:
        a = span.attributes or {}
        return a.get("job.id") == str(job_id) and all(a.get(k) == v for k, v in attrs.items())

    return match


NO_JITTER_1S = {
    "min_backoff": timedelta(seconds=1),
    "max_backoff": timedelta(seconds=1),
    "backoff_jitter_pct": 0,
}


async def test_spawn_span_is_parent_of_execute_on_another_task(make_jobs, job_database, spans):
    """job.spawn (PRODUCER) sits under the caller's span; its context travels with the job
    (W3C traceparent) and parents job.execute (CONSUMER), which runs on a poller task; the
    runner's own spans and job.complete sit under job.execute."""
    runner_tasks = []

    async def run(current):
        runner_tasks.append(asyncio.current_task())
        with user_tracer.start_as_current_span("user.work"):
            pass
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("tel_basic", run))
    await jobs.start_poll()
    with user_tracer.start_as_current_span("user.request") as request:
        job = await spawner.spawn(Cfg(n=1))
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.COMPLETED

    (spawn,) = spans.named("job.spawn")
    assert spawn.kind is SpanKind.PRODUCER
    assert dict(spawn.attributes or {}) == {"job.type": "tel_basic", "job.count": 1}
    assert _trace_id(spawn) == _trace_id(request)
    assert _parent_id(spawn) == _span_id(request)

    # The stored carrier is the spawn span's W3C traceparent.
    carrier = await job_database.tracing_context(job.id)
    ctx = spawn.get_span_context()
    assert ctx is not None
    assert carrier == {
        "traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    }

    execute = await spans.wait_for("job.execute", _for_job(job.id))
    assert execute.kind is SpanKind.CONSUMER
    assert _trace_id(execute) == _trace_id(spawn)
    assert _parent_id(execute) == _span_id(spawn)
    assert execute.parent is not None and execute.parent.is_remote
    assert dict(execute.attributes or {}) == {
        "job.id": str(job.id),
        "job.type": "tel_basic",
        "job.attempt": 1,
        "conclusion": "Complete",
    }
    assert execute.status.status_code is StatusCode.UNSET
    # It really ran on a different task from the one that spawned it.
    assert runner_tasks and runner_tasks[0] is not asyncio.current_task()

    (work,) = spans.named("user.work")
    assert _parent_id(work) == _span_id(execute)
    complete = await spans.wait_for("job.complete", _for_job(job.id))
    assert complete.kind is SpanKind.INTERNAL
    assert _parent_id(complete) == _span_id(execute)
    assert dict(complete.attributes or {}) == {"job.id": str(job.id), "job.type": "tel_basic"}


async def test_spawn_many_one_span_parents_every_execution(make_jobs, spans):
    """spawn_many makes one job.spawn span (job.count = n), a root when no span is active,
    and every job's execution is its child."""

    async def run(current):
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("tel_many", run))
    await jobs.start_poll()
    created = await spawner.spawn_many([Cfg(n=1), JobSpec(Cfg(n=2)), Cfg(n=3)])
    for job in created:
        await jobs.await_completion(job.id, timeout=10)

    (spawn,) = spans.named("job.spawn")
    assert spawn.parent is None
    assert (spawn.attributes or {})["job.count"] == 3
    for job in created:
        execute = await spans.wait_for("job.execute", _for_job(job.id))
        assert _trace_id(execute) == _trace_id(spawn)
        assert _parent_id(execute) == _span_id(spawn)


async def test_spawn_unique_span(make_jobs, spans):
    """spawn_unique records its key instead of a count."""

    async def run(current):
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("tel_unique", run))
    result = await spawner.spawn_unique(Cfg(), key="k1")
    assert result.created
    (spawn,) = spans.named("job.spawn")
    assert spawn.kind is SpanKind.PRODUCER
    assert dict(spawn.attributes or {}) == {"job.type": "tel_unique", "job.unique_key": "k1"}


async def test_raising_runner_fails_with_warn_then_retries(make_jobs, spans, caplog):
    """A runner that raises: job.execute and job.fail carry the error; the retry is WARN,
    will_retry=True; the retried run's job.execute is again a child of job.spawn."""
    clock, controller = ClockHandle.manual()

    async def run(current):
        if current.attempt == 1:
            raise RuntimeError("boom on the first try")
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(
        FnInitializer("tel_retry", run, retry=RetrySettings(n_attempts=3, **NO_JITTER_1S))
    )
    await jobs.start_poll()
    caplog.set_level("WARNING", logger="job.dispatcher")
    job = await spawner.spawn(Cfg())

    fail = await spans.wait_for("job.fail", _for_job(job.id))
    first = await spans.wait_for("job.execute", _for_job(job.id, **{"job.attempt": 1}))
    attrs = dict(fail.attributes or {})
    assert attrs["will_retry"] is True
    assert attrs["error"] is True
    assert attrs["error.level"] == "WARN"
    assert "boom on the first try" in str(attrs["error.message"])
    assert attrs["job.type"] == "tel_retry"
    assert attrs["job.attempt"] == 1
    assert fail.status.status_code is StatusCode.ERROR
    assert _parent_id(fail) == _span_id(first)

    first_attrs = dict(first.attributes or {})
    assert first_attrs["conclusion"] == "Error"
    assert first_attrs["error"] is True
    assert first_attrs["error.level"] == "WARN"
    assert first_attrs["error.message"] == "boom on the first try"
    assert first_attrs["exception.type"] == "RuntimeError"
    assert first.status.status_code is StatusCode.ERROR

    (record,) = [r for r in caplog.records if r.name == "job.dispatcher"]
    assert record.levelname == "WARNING"
    assert "attempt 1 failed" in record.getMessage()
    assert "retry 2 at" in record.getMessage()

    await controller.advance(timedelta(seconds=1))
    await wait_for_poll(jobs)
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.COMPLETED

    (spawn,) = spans.named("job.spawn")
    second = await spans.wait_for("job.execute", _for_job(job.id, **{"job.attempt": 2}))
    assert _trace_id(second) == _trace_id(spawn)
    assert _parent_id(second) == _span_id(spawn)
    assert (second.attributes or {})["conclusion"] == "Complete"


async def test_exhausted_attempts_fail_with_error(make_jobs, spans, caplog):
    """With n_attempts=1 the first failure is terminal: will_retry=False, error.level=ERROR."""

    async def run(current):
        raise ValueError("permanently broken")

    jobs = await make_jobs()
    spawner = jobs.add_initializer(
        FnInitializer("tel_exhausted", run, retry=RetrySettings(n_attempts=1))
    )
    await jobs.start_poll()
    caplog.set_level("WARNING", logger="job.dispatcher")
    job = await spawner.spawn(Cfg())
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.ERRORED

    fail = await spans.wait_for("job.fail", _for_job(job.id))
    attrs = dict(fail.attributes or {})
    assert attrs["will_retry"] is False
    assert attrs["error.level"] == "ERROR"
    assert "permanently broken" in str(attrs["error.message"])
    assert fail.status.status_code is StatusCode.ERROR

    (record,) = [r for r in caplog.records if r.name == "job.dispatcher"]
    assert record.levelname == "ERROR"
    assert "giving up" in record.getMessage()


class Panic(BaseException):
    """Not an Exception: the library treats it like a Rust panic."""


async def test_base_exception_is_error_level_even_when_retrying(make_jobs, spans):
    """A BaseException from a runner is reported at ERROR on job.execute and job.fail, even
    though the job will be retried (the manual clock is never advanced, so it waits)."""
    clock, _controller = ClockHandle.manual()

    async def run(current):
        raise Panic("the runner panicked")

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("tel_panic", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())

    fail = await spans.wait_for("job.fail", _for_job(job.id))
    execute = await spans.wait_for("job.execute", _for_job(job.id))
    attrs = dict(execute.attributes or {})
    assert attrs["error"] is True
    assert attrs["error.level"] == "ERROR"
    assert attrs["error.message"] == "the runner panicked"
    assert attrs["exception.type"] == "Panic"
    assert attrs["conclusion"] == "Error"
    assert execute.status.status_code is StatusCode.ERROR

    fail_attrs = dict(fail.attributes or {})
    assert fail_attrs["will_retry"] is True
    assert fail_attrs["error.level"] == "ERROR"
    assert fail_attrs["error.message"] == "Panic: the runner panicked"


async def test_reschedule_in_span(make_jobs, spans):
    """RescheduleIn gives job.reschedule with the new due time (application clock)."""
    clock, _controller = ClockHandle.manual()

    async def run(current):
        return RescheduleIn(timedelta(hours=1))

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("tel_resched", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())

    reschedule = await spans.wait_for("job.reschedule", _for_job(job.id))
    execute = await spans.wait_for("job.execute", _for_job(job.id))
    assert dict(reschedule.attributes or {}) == {
        "job.id": str(job.id),
        "job.type": "tel_resched",
        "job.reschedule_at": (clock.now() + timedelta(hours=1)).isoformat(),
    }
    assert _parent_id(reschedule) == _span_id(execute)
    assert (execute.attributes or {})["conclusion"] == "RescheduleIn"
    assert (await jobs.find(job.id)).state is JobState.PENDING


async def test_poll_span_counts_claims(make_jobs, spans):
    """Each poll is a root job.poll span with the claim limit and how many rows it claimed."""

    async def run(current):
        return Complete()

    jobs = await make_jobs(max_jobs_per_process=7, min_jobs_per_process=3)
    spawner = jobs.add_initializer(FnInitializer("tel_poll", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await jobs.await_completion(job.id, timeout=10)

    poll = await spans.wait_for("job.poll", lambda s: (s.attributes or {})["job.poll.claimed"])
    assert dict(poll.attributes or {}) == {"job.poll.limit": 7, "job.poll.claimed": 1}
    assert poll.kind is SpanKind.INTERNAL
    assert poll.parent is None
    assert all(s.parent is None for s in spans.named("job.poll"))


async def test_shutdown_span(make_jobs, spans):
    jobs = await make_jobs()
    await jobs.start_poll()
    await jobs.shutdown()
    (shutdown,) = spans.named("job.shutdown")
    assert shutdown.parent is None
    assert shutdown.status.status_code is StatusCode.UNSET


async def test_poll_spans_do_not_join_the_span_around_start_poll(make_jobs, spans):
    async def run(current):
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("tel_leak", run))
    with user_tracer.start_as_current_span("app.startup"):
        await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await jobs.await_completion(job.id, timeout=10)
    await spans.wait_for("job.poll", lambda s: (s.attributes or {})["job.poll.claimed"])
    assert all(s.parent is None for s in spans.named("job.poll"))
