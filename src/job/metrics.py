"""Prometheus export of `job`'s OpenTelemetry metrics (the ``metrics`` extra).

The library itself only records through the OpenTelemetry API (``job._metrics``; the metrics
are listed in docs/telemetry.md#metrics). These two helpers make them scrapeable without
wiring an SDK yourself; ``job worker --metrics-port`` and the dashboard's ``/metrics`` use
them::

    from job.metrics import start_prometheus_server

    start_prometheus_server(9464)  # before Jobs.start_poll(): the queue gauges start then

Both install, once per process and only if no MeterProvider is installed yet, an SDK
``MeterProvider`` whose only reader is a ``PrometheusMetricReader`` (registered with
``prometheus_client``'s default registry). If your application installed its own provider
first, it is kept: give it a ``PrometheusMetricReader`` for these endpoints to show the job
metrics. Both raise ImportError if the extra is not installed (``pip install 'job[metrics]'``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics as otel_metrics

from job import _metrics

__all__ = ["prometheus_asgi_app", "start_prometheus_server"]

logger = logging.getLogger("job.metrics")

_EXTRA_MISSING = (
    "job's Prometheus metrics need the `metrics` extra: pip install 'job[metrics]'"
    " (opentelemetry-sdk, opentelemetry-exporter-prometheus, prometheus-client)"
)

_lock = threading.Lock()
_installed = False


def _ensure_provider() -> None:
    """Install the SDK provider with a Prometheus reader, unless one is installed already."""
    global _installed
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError as exc:
        raise ImportError(_EXTRA_MISSING) from exc
    with _lock:
        if _installed:
            return
        current = otel_metrics.get_meter_provider()
        if _metrics.is_placeholder(current):
            provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
            otel_metrics.set_meter_provider(provider)
            if otel_metrics.get_meter_provider() is not provider:  # another thread won
                provider.shutdown()
        else:
            logger.info(
                "job metrics: a MeterProvider (%s) is installed already; it is used as is"
                " (it needs a PrometheusMetricReader for the job metrics to be scraped)",
                type(current).__name__,
            )
        _installed = True
    _metrics.refresh()


def start_prometheus_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve the metrics for Prometheus at ``http://host:port/`` (any path) from a daemon
    thread, after installing the provider (see the module doc). Loopback by default: pass
    ``host="0.0.0.0"`` to let other machines scrape."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(_EXTRA_MISSING) from exc
    _ensure_provider()
    prometheus_client.start_http_server(port, addr=host)


def prometheus_asgi_app() -> Callable[..., Any]:
    """An ASGI app serving the metrics for Prometheus (mount it, e.g. at ``/metrics``),
    after installing the provider (see the module doc)."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(_EXTRA_MISSING) from exc
    _ensure_provider()
    app: Callable[..., Any] = prometheus_client.make_asgi_app()
    return app
