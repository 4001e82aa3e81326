"""OpenTelemetry for `job`: one tracer, span names, and trace-context carry-over.

Only the OpenTelemetry *API* is used; with no SDK configured every call is a cheap no-op.
The spawn span's context is stored with the job (W3C ``traceparent``) and becomes the parent of
the execution span, so a trace follows a job from the request that spawned it to its run.
Every span name and attribute is listed in docs/telemetry.md.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any
from uuid import UUID

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, Status, StatusCode

TRACER = trace.get_tracer("job")

SPAN_SPAWN = "job.spawn"
SPAN_POLL = "job.poll"
SPAN_EXECUTE = "job.execute"
SPAN_EXECUTE_BATCH = "job.execute_batch"
SPAN_COMPLETE = "job.complete"
SPAN_FAIL = "job.fail"
SPAN_RESCHEDULE = "job.reschedule"
SPAN_LOST = "job.reclaim_lost"
SPAN_SHUTDOWN = "job.shutdown"


# A reusable "no span" context manager for the per-job hot path.
NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)


_enabled = False


def is_enabled() -> bool:
    """Whether an SDK tracer provider is installed. Without one every span is a no-op, but
    creating no-op spans still cost about a tenth of the per-job CPU (measured), so the
    per-job paths skip them. A provider may be installed at any time, but never removed: once
    seen, the answer is cached (the lookup reads os.environ while none is set)."""
    global _enabled
    if not _enabled:
        provider = trace.get_tracer_provider()
        _enabled = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return _enabled


def span(name: str, **kwargs: Any) -> AbstractContextManager[Span]:
    """``TRACER.start_as_current_span(name, ...)``, or NO_SPAN when tracing is off."""
    return TRACER.start_as_current_span(name, **kwargs) if is_enabled() else NO_SPAN


def child_span(name: str, job_id: UUID, job_type: str) -> AbstractContextManager[Span]:
    """A child of the current (execute) span, or NO_SPAN if that one is not recording: with
    no SDK, or a parent sampled out, a child would be dropped anyway."""
    if not trace.get_current_span().is_recording():
        return NO_SPAN
    attributes = {"job.id": str(job_id), "job.type": job_type}
    return TRACER.start_as_current_span(name, attributes=attributes)


def current_trace_carrier() -> dict[str, str] | None:
    """The active trace context as a JSON-able carrier, or None outside any span."""
    if not is_enabled():
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def context_from_carrier(carrier: dict[str, Any] | None) -> context.Context | None:
    if not carrier:
        return None
    return propagate.extract({str(k): str(v) for k, v in carrier.items()})


def record_error(span: Span, exc: BaseException, *, level: str) -> None:
    span.set_attribute("error", True)
    span.set_attribute("error.level", level)
    span.set_attribute("error.message", str(exc) or type(exc).__name__)
    span.set_attribute("exception.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
