"""OpenTelemetry metrics for `job`: the instruments, the per-job recording hooks, the sampler
behind the queue gauges.

Only the OpenTelemetry *API* is used (the ``metrics`` extra and ``job.metrics`` add the SDK
and a Prometheus endpoint). Every metric name, unit and attribute is listed in
docs/telemetry.md#metrics.

Cost with no MeterProvider: the per-job hooks are one-line calls from the spawner, the
dispatcher and the outcome writer, and they must cost about nothing when nobody collects.
Asking the API for the global provider costs about 2 us (it reads ``os.environ`` while none
is set), a few percent of the ~50 us of CPU a job costs, so the hooks do not ask per call:
while metrics are off, the provider is looked up at most once per ``RECHECK_SECONDS`` (wall
clock); in between a hook is a global read and a clock read. A provider may be installed at
any time but never removed: once one is seen, the instruments are created (lazily, once) and
the answer is kept. So a provider installed after jobs started running is picked up within
``RECHECK_SECONDS``; ``job.metrics`` installs its own and calls :func:`refresh` at once.

Runs are followed by their claim token from their start to the write of their outcome
(``_runs``): the outcome counter needs the job type and queue, which the outcome write does
not carry. That map is only filled while metrics are on, and every entry goes when its run's
task ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import anyio
from opentelemetry import metrics
from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.util.types import Attributes

from job import _events as ev

if TYPE_CHECKING:
    from job._backend import Backend, ClaimedRow, OutcomeWrite
    from job._registry import Registry
    from job.clock import ClockHandle

logger = logging.getLogger("job.metrics")

METER_NAME: Final = "job"

# Instrument names (OpenTelemetry messaging semantic conventions where they fit).
SENT_MESSAGES: Final = "messaging.client.sent.messages"
CONSUMED_MESSAGES: Final = "messaging.client.consumed.messages"
PROCESS_DURATION: Final = "messaging.process.duration"
RUNS_FINISHED: Final = "job.runs.finished"
QUEUE_DEPTH: Final = "job.queue.depth"
QUEUE_LAG: Final = "job.queue.lag"

# Attribute names.
SYSTEM: Final = "messaging.system"
DESTINATION: Final = "messaging.destination.name"
OPERATION: Final = "messaging.operation.name"
JOB_TYPE: Final = "job.type"
OUTCOME: Final = "job.outcome"
STATE: Final = "job.state"

# The values of job.outcome: how a run ended, as its (applied) outcome write says.
COMPLETED: Final = "completed"
ERRORED: Final = "errored"  # failed for good: no attempt left, Discard, an unreadable row
CANCELLED: Final = "cancelled"
RETRIED: Final = "retried"  # failed, another attempt is scheduled
RESCHEDULED: Final = "rescheduled"  # RescheduleAt / RescheduleIn / RescheduleNow
RATE_LIMITED: Final = "rate_limited"  # stopped for a rate limit, back to pending

#: Seconds processing durations are bucketed by (the semantic conventions' advice for
#: messaging durations, extended to a minute: jobs run longer than message handlers).
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)

#: While no provider is installed, how often (wall clock) the hooks look for one.
RECHECK_SECONDS: Final = 1.0
#: How often (wall clock) DepthSampler refreshes what the queue gauges report.
DEPTH_INTERVAL: Final = 15.0

_monotonic = time.monotonic
_perf_counter = time.perf_counter


class _TypeAttrs:
    """One job type's (and queue's) attribute sets, built once, and its running tallies."""

    __slots__ = (
        "_base",
        "consumed",
        "consumed_n",
        "outcome_n",
        "outcomes",
        "process",
        "sent",
        "sent_n",
    )

    def __init__(self, job_type: str, queue: str) -> None:
        base = {SYSTEM: "job", DESTINATION: queue, JOB_TYPE: job_type}
        self.sent: Attributes = {**base, OPERATION: "spawn"}
        self.consumed: Attributes = {**base, OPERATION: "claim"}
        self.process: Attributes = {**base, OPERATION: "process"}
        self.outcomes: dict[str, Attributes] = {}
        self._base = base
        self.sent_n = 0
        self.consumed_n = 0
        self.outcome_n: dict[str, int] = {}

    def count_outcome(self, outcome: str) -> None:
        if outcome not in self.outcomes:
            self.outcomes[outcome] = {**self._base, OUTCOME: outcome}
        self.outcome_n[outcome] = self.outcome_n.get(outcome, 0) + 1


class _Instruments:
    """The instruments of one provider.

    The three counters are observable: the hooks add to plain integers (``_TypeAttrs``) and
    the SDK reads them when it collects. A synchronous ``Counter.add`` costs the SDK several
    microseconds (it cleans and hashes the attributes of every measurement), the integer
    about a tenth of one; the exported cumulative sums are the same. Only the duration
    histogram is recorded per run (there is no observable histogram).
    """

    __slots__ = ("attrs", "duration", "observables")

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(METER_NAME)
        self.attrs: dict[tuple[str, str], _TypeAttrs] = {}
        self.duration: Histogram = meter.create_histogram(
            PROCESS_DURATION,
            unit="s",
            description="Duration of job runs (a batch: one run).",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.observables = (
            meter.create_observable_counter(
                SENT_MESSAGES,
                callbacks=[self._observe_sent],
                unit="{message}",
                description="Jobs spawned.",
            ),
            meter.create_observable_counter(
                CONSUMED_MESSAGES,
                callbacks=[self._observe_consumed],
                unit="{message}",
                description="Jobs claimed to run.",
            ),
            meter.create_observable_counter(
                RUNS_FINISHED,
                callbacks=[self._observe_finished],
                unit="{run}",
                description="Runs whose outcome was stored, by outcome (job.outcome).",
            ),
            meter.create_observable_gauge(
                QUEUE_DEPTH,
                callbacks=[_observe_depth],
                unit="{job}",
                description="Live jobs per type and state (pending, running).",
            ),
            meter.create_observable_gauge(
                QUEUE_LAG,
                callbacks=[_observe_lag],
                unit="s",
                description="How long the oldest due pending job of the type has waited.",
            ),
        )

    def for_type(self, job_type: str, queue: str) -> _TypeAttrs:
        key = (job_type, queue)
        attrs = self.attrs.get(key)
        if attrs is None:
            attrs = self.attrs[key] = _TypeAttrs(job_type, queue)
        return attrs

    # The callbacks run on the exporter's thread: they copy before iterating.

    def _observe_sent(self, options: CallbackOptions) -> Iterator[Observation]:
        for t in list(self.attrs.values()):
            if t.sent_n:
                yield Observation(t.sent_n, t.sent)

    def _observe_consumed(self, options: CallbackOptions) -> Iterator[Observation]:
        for t in list(self.attrs.values()):
            if t.consumed_n:
                yield Observation(t.consumed_n, t.consumed)

    def _observe_finished(self, options: CallbackOptions) -> Iterator[Observation]:
        for t in list(self.attrs.values()):
            for outcome, n in list(t.outcome_n.items()):
                yield Observation(n, t.outcomes[outcome])


class _Run:
    """A run in progress (a batch: one for all its rows)."""

    __slots__ = ("attrs", "started")

    def __init__(self, attrs: _TypeAttrs) -> None:
        self.attrs = attrs
        self.started = _perf_counter()


_override: MeterProvider | None = None
_instruments: _Instruments | None = None
_next_check = 0.0
#: claim token -> its run, from the run's start until its task ends (filled only while on).
_runs: dict[UUID, _Run] = {}


def is_placeholder(provider: MeterProvider) -> bool:
    """Whether ``provider`` is the API's stand-in (nothing installed) or its no-op one."""
    return isinstance(provider, NoOpMeterProvider | _ProxyMeterProvider)


def _load() -> _Instruments | None:
    """The instruments, created on the first look that finds a real provider."""
    global _instruments, _next_check
    if _instruments is None:
        provider = _override if _override is not None else metrics.get_meter_provider()
        if is_placeholder(provider):
            _next_check = _monotonic() + RECHECK_SECONDS
            return None
        _instruments = _Instruments(provider)
    return _instruments


def enabled() -> bool:
    """Whether a MeterProvider is installed (looked up now; then kept once true)."""
    return _load() is not None


def refresh() -> None:
    """Look for a provider at the next hook instead of up to RECHECK_SECONDS later (called
    by ``job.metrics`` right after it installs one)."""
    global _next_check
    _next_check = 0.0


def use_meter_provider(provider: MeterProvider | None) -> None:
    """Record into ``provider`` instead of the global one (None: back to the global one).

    For tests: the global provider can be set only once per process. Instruments, cached
    attributes and runs in progress are dropped, so the next measurement goes to the new one.
    """
    global _override, _instruments, _next_check
    _override = provider
    _instruments = None
    _next_check = 0.0
    _runs.clear()


# -- hooks (one line each at their call site; each returns at once while metrics are off) -----


def spawned(registry: Registry, job_type: str, count: int) -> None:
    """``count`` jobs of ``job_type`` were created (the insert committed, or joined the
    caller's transaction: those count when the spawn call returns)."""
    inst = _instruments
    if inst is None and (_monotonic() < _next_check or (inst := _load()) is None):
        return
    if count:
        try:
            inst.for_type(job_type, registry.queues.get(job_type, "")).sent_n += count
        except Exception:  # metrics never fail a spawn
            logger.debug("job metrics: recording a spawn failed", exc_info=True)


def run_started(registry: Registry, rows: Sequence[ClaimedRow]) -> None:
    """A run of ``rows`` (one job, or a batch of one type) starts: they were claimed."""
    inst = _instruments
    if inst is None and (_monotonic() < _next_check or (inst := _load()) is None):
        return
    try:
        job_type = rows[0].job_type
        attrs = inst.for_type(job_type, registry.queues.get(job_type, ""))
        attrs.consumed_n += len(rows)
        run = _Run(attrs)
        for row in rows:
            _runs[row.claim_token] = run
    except Exception:  # metrics never fail a run
        logger.debug("job metrics: recording a run's start failed", exc_info=True)


def run_ended(rows: Sequence[ClaimedRow]) -> None:
    """The run of ``rows`` is over (its outcome is not written yet): record its duration."""
    if not _runs:
        return
    run = _runs.get(rows[0].claim_token)
    inst = _instruments
    if run is not None and inst is not None:
        try:
            inst.duration.record(_perf_counter() - run.started, run.attrs.process)
        except Exception:
            logger.debug("job metrics: recording a run's duration failed", exc_info=True)


def outcome_applied(write: OutcomeWrite) -> None:
    """``write`` was stored (its fence held): count its run's outcome."""
    if not _runs:
        return
    run = _runs.get(write.claim_token)
    if run is not None:
        try:
            run.attrs.count_outcome(outcome_of(write))
        except Exception:  # never break the outcome writer
            logger.debug("job metrics: recording an outcome failed", exc_info=True)


def outcomes_applied(writes: Iterable[OutcomeWrite]) -> None:
    """:func:`outcome_applied` for each of ``writes``."""
    if _runs:
        for write in writes:
            outcome_applied(write)


def run_over(rows: Sequence[ClaimedRow]) -> None:
    """The run's task is ending: forget it (an outcome stored after this is not counted)."""
    if _runs:
        for row in rows:
            _runs.pop(row.claim_token, None)


def outcome_of(write: OutcomeWrite) -> str:
    """The job.outcome value of an outcome write (see job._transitions)."""
    events = write.events
    if write.terminal:  # ... ends with job_completed{state}
        state = events[-1].get("data", {}).get("state") if events else None
        return state if isinstance(state, str) else ERRORED
    # ... ends with execution_scheduled, after what ended this run.
    ended_by = events[-2]["type"] if len(events) >= 2 else None
    if ended_by == ev.EXECUTION_ERRORED:
        return RETRIED
    if ended_by == ev.EXECUTION_RATE_LIMITED:
        return RATE_LIMITED
    return RESCHEDULED


# -- queue gauges ----------------------------------------------------------------------------


_samplers_lock = threading.Lock()
_samplers: list[DepthSampler] = []


def _freshest(pick: Callable[[DepthSampler], tuple[Observation, ...]]) -> list[Observation]:
    """The observations of every running sampler; where two report the same attributes (two
    services on one database in one process), the most recently refreshed one's."""
    with _samplers_lock:
        samplers = sorted(_samplers, key=lambda sampler: sampler.refreshed_at)
    latest: dict[frozenset[Any], Observation] = {}
    for sampler in samplers:
        for observation in pick(sampler):
            latest[frozenset((observation.attributes or {}).items())] = observation
    return list(latest.values())


def _observe_depth(options: CallbackOptions) -> list[Observation]:
    return _freshest(lambda sampler: sampler.depth)


def _observe_lag(options: CallbackOptions) -> list[Observation]:
    return _freshest(lambda sampler: sampler.lag)


class DepthSampler:
    """Reads the depth and lag of every job type's live jobs every ``interval`` seconds (wall
    clock) for the ``job.queue.depth`` and ``job.queue.lag`` gauges: their callbacks run on
    the exporter's thread, at scrape time, so they report what the last read cached.

    Started by the polling service when metrics are enabled. The figures are the database's
    (every type with live jobs, not only this worker's), so every worker reports the same
    values: aggregate them with max, not sum. Types registered here, and types seen before,
    report 0 rather than disappearing when they have no live jobs. A failed read drops the
    cached figures (the gauges report nothing until the next read succeeds).
    """

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        clock: ClockHandle,
        *,
        interval: float = DEPTH_INTERVAL,
    ) -> None:
        self._backend = backend
        self._registry = registry
        self._clock = clock
        self._interval = interval
        self._seen: set[str] = set()
        self._failures = 0
        #: What the gauges report (replaced whole, never mutated: read from another thread).
        self.depth: tuple[Observation, ...] = ()
        self.lag: tuple[Observation, ...] = ()
        self.refreshed_at = 0.0  # time.monotonic() of the last read

    async def run(self) -> None:
        _load()  # the gauges exist once the instruments do
        with _samplers_lock:
            _samplers.append(self)
        try:
            while True:
                await self.refresh()
                await anyio.sleep(self._interval)
        finally:
            with _samplers_lock:
                _samplers.remove(self)

    async def refresh(self) -> None:
        """Read the figures now."""
        try:
            rows = await self._backend.admin_queue_depths(self._clock.now())
        except Exception:
            self._failures += 1
            log = logger.warning if self._failures == 1 else logger.debug  # once per outage
            log("job queue depths could not be read for the metrics", exc_info=True)
            self.depth = self.lag = ()
            self.refreshed_at = _monotonic()
            return
        self._failures = 0
        queues = self._registry.queues
        figures = dict.fromkeys(sorted(self._seen | set(queues)), (0, 0, 0.0))
        for job_type, pending, running, lag in rows:
            figures[job_type] = (pending, running, lag)
        self._seen.update(figures)
        depth, lags = [], []
        for job_type, (pending, running, lag) in figures.items():
            attrs = {SYSTEM: "job", JOB_TYPE: job_type}
            queue = queues.get(job_type)
            if queue is not None:  # a type no worker of this process runs: queue unknown
                attrs[DESTINATION] = queue
            depth.append(Observation(pending, {**attrs, STATE: "pending"}))
            depth.append(Observation(running, {**attrs, STATE: "running"}))
            lags.append(Observation(lag, attrs))
        self.depth, self.lag = tuple(depth), tuple(lags)
        self.refreshed_at = _monotonic()
