"""``job.metrics``: the Prometheus endpoint (HTTP server and ASGI app) over the job metrics.

Installing the global MeterProvider is once per process and would switch metrics on for every
later test, so each scenario runs in its own Python process: it starts the server on a free
port, runs two jobs on SQLite, samples the queue gauges, prints READY and waits; this test
scrapes it over HTTP with urllib and reads the exposition with prometheus_client's parser.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import job.metrics

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys
from pathlib import Path

import anyio
from opentelemetry import metrics

from job import Jobs, JobSvcConfig, _metrics
from job.metrics import prometheus_asgi_app, start_prometheus_server
from job.testing import drain
from tests.support import Cfg, FnInitializer, complete

port, mode, db = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])


async def asgi_body() -> bytes:
    app = prometheus_asgi_app()
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": [],
             "query_string": b""}
    await app(scope, receive, send)
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def main() -> None:
    own = None
    if mode == "own":  # the application installed its provider (with a reader) first
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider

        own = MeterProvider(metric_readers=[PrometheusMetricReader()])
        metrics.set_meter_provider(own)
    start_prometheus_server(port)
    start_prometheus_server(port + 1)  # a second endpoint: the provider is not installed twice
    if own is not None:
        assert metrics.get_meter_provider() is own
    async with await Jobs.init(JobSvcConfig(sqlite_path=db)) as jobs:
        spawner = jobs.add_initializer(FnInitializer("srv_job", complete))
        await spawner.spawn_many([Cfg(n=1), Cfg(n=2)])
        await jobs.start_poll()
        assert (await drain(jobs)).completed == 2
        sampler = _metrics.DepthSampler(jobs._backend, jobs._registry, jobs.clock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sampler.run)
            await sampler.refresh()
            body = await asgi_body()
            print("ASGI", sum(line.startswith(b"job_") for line in body.splitlines()))
            print("READY", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            tg.cancel_scope.cancel()


anyio.run(main)
"""


def free_port() -> int:
    """A port free now, and the next one (start_prometheus_server is called on both)."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return int(port)
    raise AssertionError("no two adjacent free ports")


@contextmanager
def exporter(mode: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A child process serving the metrics: (its port, job_ lines its ASGI app served)."""
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), mode, str(tmp_path / "jobs.db")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            lines = []
            for line in child.stdout:
                lines.append(line.strip())
                if line.startswith("READY"):
                    break
            else:
                raise AssertionError(f"the exporter process ended early: {lines}")
            (asgi,) = [int(line.split()[1]) for line in lines if line.startswith("ASGI")]
            yield port, asgi
            child.stdin.close()
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample served at port, by sample name: (labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def job_value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str):
    values = [
        value
        for got, value in samples.get(name, [])
        if got.get("job_type") == "srv_job" and all(got.get(k) == v for k, v in labels.items())
    ]
    assert len(values) == 1, f"{name}{labels}: {samples.get(name)}"
    return values[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["fresh", "own"])
def test_the_server_serves_the_job_metrics(mode: str, tmp_path: Path) -> None:
    """Both endpoints serve the job metrics: counters, the duration histogram, the queue
    gauges, with their attributes as labels; with the application's own provider too."""
    with exporter(mode, tmp_path) as (port, asgi_job_lines):
        for samples in (scrape(port), scrape(port + 1)):
            assert job_value(samples, "messaging_client_sent_messages_total") == 2
            assert job_value(samples, "messaging_client_consumed_messages_total") == 2
            assert job_value(samples, "job_runs_finished_total", job_outcome="completed") == 2
            assert job_value(samples, "messaging_process_duration_seconds_count") == 2
            assert job_value(samples, "job_queue_depth", job_state="pending") == 0
            assert job_value(samples, "job_queue_depth", job_state="running") == 0
            assert job_value(samples, "job_queue_lag_seconds") == 0
            labels = next(
                got
                for got, _ in samples["job_runs_finished_total"]
                if got.get("job_type") == "srv_job"
            )
            assert labels["messaging_system"] == "job"
            assert labels["messaging_destination_name"] == "default"
            assert sorted(n for n in samples if n.startswith("job_")) == [
                "job_queue_depth",
                "job_queue_lag_seconds",
                "job_runs_finished_total",
            ]
        assert asgi_job_lines == 4  # finished, lag, depth x2 (pending, running)


@pytest.mark.parametrize("missing", ["prometheus_client", "opentelemetry.exporter.prometheus"])
def test_without_the_extra_both_helpers_say_what_to_install(
    missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import` now raises ImportError
    monkeypatch.setattr(job.metrics, "_installed", False)
    with pytest.raises(ImportError, match=r"pip install 'job\[metrics\]'"):
        job.metrics.start_prometheus_server(free_port())
    with pytest.raises(ImportError, match=r"pip install 'job\[metrics\]'"):
        job.metrics.prometheus_asgi_app()
