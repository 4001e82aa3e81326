"""The operator command line (``job jobs|queues|cron|workers|stats|dashboard``), run for real
as subprocesses against both backends; the data is set up, and every change checked, through
the library's own API in this process.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import sqlite3
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import anyio
import pytest

from job import (
    ClockHandle,
    Complete,
    Discard,
    JobNotFoundError,
    Jobs,
    JobState,
    JobSvcConfig,
    RetrySettings,
)
from job.testing import drain
from tests.acceptance._harness import Proc
from tests.fixtures.database import TestDatabase
from tests.fixtures.db import create_database, drop_database
from tests.support import Cfg, FnInitializer
from tests.worker_targets import HoldConfig, HoldInitializer

pytestmark = pytest.mark.anyio

ME = f"cli:{getpass.getuser()}"
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return json.loads(self.out)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOB_DATABASE_URL", "JOB_SQLITE_PATH")}
    return {**env, **(extra or {})}


async def cli(*args: str, env: dict[str, str] | None = None) -> Run:
    """``python -m job ARGS`` in a subprocess; the event loop (and a polling service in this
    process) keeps running meanwhile."""
    proc = await anyio.run_process(
        [sys.executable, "-m", "job", *args], check=False, env=_env(env)
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


async def each(*commands: Sequence[str]) -> list[Run]:
    """Several read-only commands at once (each is a process start: run them side by side)."""
    results: dict[int, Run] = {}

    async def one(i: int, argv: Sequence[str]) -> None:
        results[i] = await cli(*argv)

    async with anyio.create_task_group() as tg:
        for i, argv in enumerate(commands):
            tg.start_soon(one, i, argv)
    return [results[i] for i in range(len(commands))]


def db_args(database: TestDatabase) -> list[str]:
    where = database.config_kwargs()
    if "pg_con" in where:
        return ["--dsn", str(where["pg_con"])]
    return ["--sqlite", str(where["sqlite_path"])]


def db_env(database: TestDatabase) -> dict[str, str]:
    where = database.config_kwargs()
    if "pg_con" in where:
        return {"JOB_DATABASE_URL": str(where["pg_con"])}
    return {"JOB_SQLITE_PATH": str(where["sqlite_path"])}


class Queued(FnInitializer):
    def __init__(self, job_type: str, fn: Any, queue: str) -> None:
        super().__init__(job_type, fn, retry=RetrySettings(n_attempts=1))
        self._queue = queue

    def queue(self) -> str:
        return self._queue


async def _by_n(current: Any) -> Any:
    """n % 3: 0 completes with a result, 1 is discarded (errored)."""
    if current.config.n % 3 == 1:
        return Discard("bad input")
    current.set_result({"doubled": current.config.n * 2})
    return Complete()


@dataclass
class World:
    jobs: Any
    completed: list[UUID]
    errored: list[UUID]
    pending: list[UUID]  # of "reports", due tomorrow

    @property
    def all(self) -> set[UUID]:
        return {*self.completed, *self.errored, *self.pending}


async def world(make_jobs: Any) -> World:
    """A polling service with two queues: mail (3 completed, 2 errored) and reports (2
    pending, due tomorrow)."""
    jobs = await make_jobs()
    mail = jobs.add_initializer(Queued("send_mail", _by_n, "mail"))
    reports = jobs.add_initializer(Queued("build_report", _by_n, "reports"))
    await jobs.start_poll()
    spawned = {n: (await mail.spawn(Cfg(n=n))).id for n in (0, 1, 3, 4, 6)}
    later = jobs.clock.now() + timedelta(days=1)
    pending = [(await reports.spawn(Cfg(n=n), at=later)).id for n in (0, 3)]
    await drain(jobs)
    completed = [spawned[n] for n in (0, 3, 6)]
    errored = [spawned[n] for n in (1, 4)]
    return World(jobs, completed, errored, pending)


def ids(run: Run) -> list[UUID]:
    return [UUID(j["id"]) for j in run.json()["jobs"]]


# -- jobs list ---------------------------------------------------------------------------------


async def test_list_filters_by_state_type_queue_search_and_since(make_jobs, job_database):
    w = await world(make_jobs)
    db = db_args(job_database)
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    everything, errored, reports, done_mail, searched, recent, since_future, table = await each(
        ["jobs", "list", "--json", *db],
        ["jobs", "list", "--state", "errored", "--json", *db],
        ["jobs", "list", "--queue", "reports", "--json", *db],
        ["jobs", "list", "--type", "send_mail", "--state", "completed", "--json", *db],
        ["jobs", "list", "--search", str(w.errored[0])[:18], "--json", *db],
        ["jobs", "list", "--since", "1h", "--json", *db],
        ["jobs", "list", "--since", future, "--json", *db],
        ["jobs", "list", *db],
    )
    listed = everything.json()
    assert listed["next_cursor"] is None
    assert [UUID(j["id"]) for j in listed["jobs"]] == sorted(w.all, reverse=True)  # newest first
    row = next(j for j in listed["jobs"] if UUID(j["id"]) == w.errored[0])
    assert set(row) == {
        "id",
        "job_type",
        "queue",
        "state",
        "attempt",
        "unique_key",
        "queue_id",
        "created_at",
        "execute_at",
        "finished_at",
    }
    assert (row["job_type"], row["queue"], row["state"], row["attempt"]) == (
        "send_mail",
        "mail",
        "errored",
        1,
    )
    assert row["execute_at"] is None and row["finished_at"] is not None
    assert datetime.fromisoformat(row["created_at"]).utcoffset() == timedelta(0)

    assert set(ids(errored)) == set(w.errored)
    assert set(ids(reports)) == set(w.pending)
    assert all(j["state"] == "pending" for j in reports.json()["jobs"])
    assert set(ids(done_mail)) == set(w.completed)
    assert ids(searched) == [w.errored[0]]
    assert set(ids(recent)) == w.all
    assert ids(since_future) == []

    # The table: a header, then one aligned row per job, newest first.
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "ID",
        "TYPE",
        "QUEUE",
        "STATE",
        "ATTEMPT",
        "CREATED",
        "DUE",
        "ENDED",
    ]
    assert [UUID(line.split()[0]) for line in lines[1:]] == sorted(w.all, reverse=True)
    first_errored = next(line for line in lines if line.startswith(str(w.errored[0])))
    assert first_errored.split()[1:5] == ["send_mail", "mail", "errored", "1"]
    assert re.search(r" \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", first_errored)
    state_col = lines[0].index("STATE")
    assert {line[state_col:].split()[0] for line in lines[1:]} == {
        "completed",
        "errored",
        "pending",
    }


async def test_pages_follow_the_cursor_and_a_bad_cursor_is_a_usage_error(make_jobs, job_database):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("paged", _by_n))
    spawned = [(await spawner.spawn(Cfg(n=n))).id for n in range(7)]
    db = db_args(job_database)
    seen: list[UUID] = []
    cursors: list[str | None] = []
    cursor: str | None = None
    for _ in range(3):
        page = (await cli("jobs", "list", "--limit", "3", *db, "--json",
                          *(["--cursor", cursor] if cursor else []))).json()  # fmt: skip
        seen += [UUID(j["id"]) for j in page["jobs"]]
        cursor = page["next_cursor"]
        cursors.append(cursor)
    assert seen == list(reversed(spawned))
    assert cursors[0] is not None and cursors[1] is not None and cursors[2] is None

    table, bad, zero = await each(
        ["jobs", "list", "--limit", "3", *db],
        ["jobs", "list", "--cursor", "' OR 1=1 --", *db],
        ["jobs", "list", "--limit", "0", *db],
    )
    assert table.code == 0
    assert table.out.splitlines()[-1] == f"next page: --cursor {cursors[0]}"
    assert len(table.out.splitlines()) == 1 + 3 + 1
    assert (bad.code, bad.out) == (2, "")
    assert "not a job list cursor" in bad.err
    assert zero.code == 2 and "must be at least 1" in zero.err


# -- jobs show / retry / cancel / delete ---------------------------------------------------------


async def test_show_prints_config_state_errors_result_and_history(make_jobs, job_database):
    w = await world(make_jobs)
    db = db_args(job_database)
    failed, done, table = await each(
        ["jobs", "show", str(w.errored[0]), "--json", *db],
        ["jobs", "show", str(w.completed[1]), "--json", *db],
        ["jobs", "show", str(w.errored[0]), *db],
    )
    expected = await w.jobs.find(w.errored[0])
    shown = failed.json()
    assert shown["id"] == str(w.errored[0])
    assert (shown["job_type"], shown["queue"], shown["state"]) == ("send_mail", "mail", "errored")
    assert (shown["attempt"], shown["runs"]) == (1, 1)
    assert shown["config"] == {"n": 1, "note": ""}
    assert shown["last_error"] == expected.last_error
    assert "bad input" in shown["last_error"]
    assert shown["result"] is None
    assert [(e["sequence"], e["type"]) for e in shown["events"]] == [
        (e.sequence, e.type) for e in expected.events
    ]
    assert [e["type"] for e in shown["events"]][-1] == "job_completed"
    assert shown["events"][-1]["data"] == {"state": "errored"}

    finished = done.json()
    assert finished["state"] == "completed"
    assert finished["config"] == {"n": 3, "note": ""}
    assert finished["result"] == {"doubled": 6}
    assert finished["last_error"] is None

    assert table.code == 0, table.err
    out = table.out
    assert re.search(r"^state\s+errored$", out, re.MULTILINE)
    assert re.search(r"^queue\s+mail$", out, re.MULTILINE)
    assert re.search(r"^last error\s+.*bad input", out, re.MULTILINE)
    assert re.search(r'^    "n": 1,$', out, re.MULTILINE)  # the config, as JSON
    history = out.split("\nhistory\n", 1)[1].splitlines()
    assert [line.split()[2] for line in history[1:]] == [e.type for e in expected.events]


async def test_retry_requeues_an_errored_job_and_refuses_a_completed_one(make_jobs, job_database):
    w = await world(make_jobs)
    await w.jobs.pause_queue("mail")  # the requeued job stays pending for the checks
    db = db_args(job_database)
    retried = await cli("jobs", "retry", str(w.errored[0]), "--json", *db)
    assert retried.json() == {"id": str(w.errored[0]), "action": "retried", "state": "pending"}
    job = await w.jobs.find(w.errored[0])
    assert job.state is JobState.PENDING
    assert [e.data for e in job.events if e.type == "requeued"] == [{"by": ME}]

    again, completed, text = await each(
        ["jobs", "retry", str(w.errored[0]), *db],  # pending now: live
        ["jobs", "retry", str(w.completed[0]), *db],
        ["jobs", "retry", str(w.errored[1]), *db],
    )
    assert again.code == 4 and "pending or running" in again.err
    assert completed.code == 4 and again.out == completed.out == ""
    assert (await w.jobs.find(w.completed[0])).state is JobState.COMPLETED
    assert text.code == 0
    assert text.out.startswith(f"job {w.errored[1]} requeued: pending, due ")
    assert (await w.jobs.find(w.errored[1])).state is JobState.PENDING


async def test_cancel_and_delete_say_what_happened(make_jobs, job_database):
    w = await world(make_jobs)
    db = db_args(job_database)
    cancelled = await cli("jobs", "cancel", str(w.pending[0]), "--reason", "not needed", *db)
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out == f"job {w.pending[0]} cancelled (it was pending: it will not run)\n"
    job = await w.jobs.find(w.pending[0])
    assert job.state is JobState.CANCELLED
    (requested,) = [e for e in job.events if e.type == "cancel_requested"]
    assert requested.data == {"by": ME, "reason": "not needed"}

    finished, live, ended = await each(
        ["jobs", "cancel", str(w.completed[0]), "--json", *db],
        ["jobs", "delete", str(w.pending[1]), *db],
        ["jobs", "delete", str(w.pending[0]), "--json", *db],
    )
    assert finished.json() == {
        "id": str(w.completed[0]),
        "action": "cancel",
        "result": "finished",
    }
    assert (live.code, live.out) == (4, "")
    assert "cancel it first" in live.err
    assert (await w.jobs.find(w.pending[1])).state is JobState.PENDING
    assert ended.json() == {"id": str(w.pending[0]), "action": "deleted"}
    with pytest.raises(JobNotFoundError):
        await w.jobs.find(w.pending[0])


async def test_an_unknown_id_exits_3_and_a_malformed_one_exits_2(job_database):
    db = db_args(job_database)
    unknown = str(uuid4())
    show, retry, cancel, delete, malformed = await each(
        ["jobs", "show", unknown, *db],
        ["jobs", "retry", unknown, *db],
        ["jobs", "cancel", unknown, "--json", *db],
        ["jobs", "delete", unknown, *db],
        ["jobs", "show", "1234-not-an-id", *db],
    )
    for run in (show, retry, cancel, delete):
        assert (run.code, run.out) == (3, "")
        assert f"no job with id {unknown}" in run.err
    assert (malformed.code, malformed.out) == (2, "")
    assert "not a job id" in malformed.err


# -- queues, cron, workers, stats ----------------------------------------------------------------


async def test_queues_pause_resume_and_scale_round_trip(make_jobs, job_database):
    w = await world(make_jobs)
    env = db_env(job_database)  # the database from the environment this time

    async def queues() -> dict[str, Any]:
        return {
            q["name"]: q for q in (await cli("queues", "list", "--json", env=env)).json()["queues"]
        }

    before = await queues()
    assert before == {
        "mail": {
            "name": "mail",
            "job_types": ["send_mail"],
            "paused": False,
            "limit": None,
            "pending": 0,
            "running": 0,
            "lag_seconds": 0.0,
        },
        "reports": {
            "name": "reports",
            "job_types": ["build_report"],
            "paused": False,
            "limit": None,
            "pending": 2,
            "running": 0,
            "lag_seconds": 0.0,
        },
    }
    paused = await cli("queues", "pause", "reports", env=env)
    assert paused.code == 0 and paused.out.startswith("queue reports paused")
    assert paused.err == ""
    scaled = await cli("queues", "scale", "mail", "3", "--json", env=env)
    assert scaled.json() == {"queue": "mail", "action": "scaled", "limit": 3}
    now = await queues()
    assert (now["reports"]["paused"], now["reports"]["limit"]) == (True, None)
    assert (now["mail"]["paused"], now["mail"]["limit"]) == (False, 3)
    assert await w.jobs.queue_settings() == {"reports": (True, None), "mail": (False, 3)}

    resumed = await cli("queues", "resume", "reports", "--json", env=env)
    default = await cli("queues", "scale", "mail", "default", env=env)
    zero = await cli("queues", "scale", "mail", "0", env=env)
    assert resumed.json() == {"queue": "reports", "action": "resumed"}
    assert (
        default.code == 0
        and default.out == "queue mail limit set to each worker's own (default)\n"
    )
    assert zero.code == 2 and "must be at least 1" in zero.err
    after = await queues()
    assert (after["reports"]["paused"], after["mail"]["limit"]) == (False, None)
    assert await w.jobs.queue_settings() == {"reports": (False, None), "mail": (False, None)}

    table = await cli("queues", "list", env=env)
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "QUEUE",
        "PAUSED",
        "LIMIT",
        "PENDING",
        "RUNNING",
        "LAG",
        "JOB",
        "TYPES",
    ]
    assert lines[1].split() == ["mail", "no", "default", "0", "0", "0.0s", "send_mail"]
    assert lines[2].split() == ["reports", "no", "default", "2", "0", "0.0s", "build_report"]

    # A queue no worker registered (a typo?) is set all the same, with a note on stderr.
    typo = await cli("queues", "pause", "mial", env=env)
    assert typo.code == 0 and typo.out.startswith("queue mial paused")
    assert "no worker registered a queue named 'mial'" in typo.err
    assert (await w.jobs.queue_settings())["mial"] == (True, None)


async def test_cron_list_shows_the_seeded_schedules(make_jobs, job_database):
    clock, _ = ClockHandle.manual(START)
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cron_cli", _by_n))
    jobs.add_schedule(spawner, "*/5 * * * *", Cfg(), name="every_five")
    jobs.add_schedule(spawner, "0 3 * * *", Cfg(), name="nightly", timezone="Europe/Paris")
    db = db_args(job_database)
    (empty,) = await each(["cron", "list", *db])
    assert (empty.code, empty.out) == (
        0,
        "no cron schedules (a leader seeds them when it starts polling)\n",
    )
    await jobs.run_schedules_once()
    listed, table = await each(["cron", "list", "--json", *db], ["cron", "list", *db])
    expected = {s.name: s for s in await jobs.admin.list_schedules()}
    schedules = listed.json()["schedules"]
    assert [s["name"] for s in schedules] == ["every_five", "nightly"]
    five = schedules[0]
    assert five["spec"] == expected["every_five"].spec
    assert "*/5 * * * *" in five["spec"]
    assert datetime.fromisoformat(five["next_fire_at"]) == START + timedelta(minutes=5)
    lines = table.out.splitlines()
    assert lines[0].split() == ["NAME", "NEXT", "FIRE", "SCHEDULE"]
    assert lines[1].split()[:2] == ["every_five", "2026-06-01T12:05:00Z"]
    assert lines[2].split()[:2] == ["nightly", "2026-06-02T01:00:00Z"]  # 03:00 in Paris


async def test_workers_lists_a_polling_service(make_jobs, job_database):
    db = db_args(job_database)
    (none,) = await each(["workers", "--json", *db])
    assert none.json() == {"workers": []}
    w = await world(make_jobs)
    listed, table = await each(["workers", "--json", *db], ["workers", *db])
    (worker,) = listed.json()["workers"]
    assert worker["instance_id"] == str(w.jobs.instance_id)
    assert worker["pid"] == os.getpid()
    assert worker["host"] == socket.gethostname()[:255]
    assert worker["job_types"] == ["build_report", "send_mail"]
    assert worker["queues"] == {"mail": ["send_mail"], "reports": ["build_report"]}
    assert (worker["running"], worker["stale"]) == (0, False)
    lines = table.out.splitlines()
    assert lines[0].split()[:3] == ["INSTANCE", "HOST", "PID"]
    assert lines[1].split()[0] == str(w.jobs.instance_id)
    assert lines[1].split()[-1] == "build_report,send_mail"


async def test_stats_counts_per_state_queue_and_type(make_jobs, job_database):
    w = await world(make_jobs)
    await w.jobs.cancel(w.pending[0])
    db = db_args(job_database)
    day, table, bad = await each(
        ["stats", "--json", *db],
        ["stats", "--window", "1h", *db],
        ["stats", "--window", "0s", *db],
    )
    stats = day.json()
    assert stats["window_seconds"] == 86400.0
    assert stats["by_state"] == {
        "pending": 1,
        "running": 0,
        "completed": 3,
        "errored": 2,
        "cancelled": 1,
    }
    assert stats["by_queue"]["mail"] == {
        "pending": 0,
        "running": 0,
        "completed": 3,
        "errored": 2,
        "cancelled": 0,
    }
    assert stats["by_queue"]["reports"]["cancelled"] == 1
    assert stats["by_type"]["build_report"]["pending"] == 1
    assert stats["failure_rate"] == pytest.approx(0.4)
    assert len(stats["throughput"]) == 24
    assert sum(b["completed"] for b in stats["throughput"]) == 3
    assert sum(b["errored"] for b in stats["throughput"]) == 2
    assert sum(b["cancelled"] for b in stats["throughput"]) == 1

    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0] == "live jobs, and jobs ended within 1h (failure rate 40.0%)"
    assert lines[1].split() == ["PENDING", "RUNNING", "COMPLETED", "ERRORED", "CANCELLED"]
    assert lines[2].split() == ["all", "1", "0", "3", "2", "1"]
    assert ["mail", "0", "0", "3", "2", "0"] in [line.split() for line in lines]
    assert (bad.code, bad.out) == (2, "")
    assert "must be positive" in bad.err


# -- where the database is, and when it is not there ---------------------------------------------


async def test_no_database_is_a_usage_error():
    run = await cli("jobs", "list")
    assert (run.code, run.out) == (2, "")
    assert "no database" in run.err and "JOB_DATABASE_URL" in run.err


async def test_a_missing_sqlite_file_fails_and_is_not_created(tmp_path):
    path = tmp_path / "nope.sqlite3"
    run = await cli("workers", "--sqlite", str(path))
    assert (run.code, run.out) == (1, "")
    assert "no SQLite database file" in run.err
    assert not path.exists()


async def test_a_schema_behind_says_to_migrate(tmp_path, pg_server):
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    name = create_database(pg_server, template="template1")  # no job schema
    try:
        on_sqlite, on_postgres = await each(
            ["queues", "list", "--sqlite", str(path)],
            ["jobs", "list", "--dsn", pg_server.dsn_for(name)],
        )
    finally:
        drop_database(pg_server, name)
    for run, how in [(on_sqlite, f"job migrate --sqlite {path}"), (on_postgres, "job migrate")]:
        assert (run.code, run.out) == (1, ""), run.err
        assert run.err.endswith(f"the job schema is not at this library's version: run `{how}`\n")


async def test_unreachable_postgres_fails_without_showing_the_password():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "Hunter2-s3cret-pw"
    dsn = f"postgresql://ops:{secret}@127.0.0.1:{port}/jobs?connect_timeout=2"
    flag = await cli("jobs", "list", "--dsn", dsn)
    env = await cli("stats", "--json", env={"JOB_DATABASE_URL": dsn})
    for run in (flag, env):
        assert run.code == 1, run.err
        assert run.out == ""
        assert run.err.startswith("job ")
        assert secret not in run.err and secret not in run.out


# -- the optional extras -------------------------------------------------------------------------


async def _without(module: str, *argv: str) -> Run:
    """``job ARGV`` with ``module`` unimportable (as when its extra is not installed)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from job.__main__ import main\n"
        f"sys.exit(main({list(argv)!r}))"
    )
    proc = await anyio.run_process([sys.executable, "-c", code], check=False, env=_env())
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


async def test_dashboard_without_its_extra_says_what_to_install(tmp_path):
    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).close()
    run = await _without("job.dashboard", "dashboard", "--sqlite", str(path))
    assert (run.code, run.out) == (2, "")
    assert "pip install 'job[dashboard]'" in run.err


async def test_worker_metrics_without_the_extra_says_what_to_install():
    run = await _without(
        "job.metrics", "worker", "tests.worker_targets:jobs", "--metrics-port", "9"
    )
    assert (run.code, run.out) == (2, "")
    assert "pip install 'job[metrics]'" in run.err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


async def test_worker_serves_prometheus_metrics_on_the_port_given(db_dsn, tmp_path):
    port = _free_port()
    args = ["worker", "tests.worker_targets:jobs", "--dsn", db_dsn, "--metrics-port", str(port)]
    proc = Proc("metrics-worker", "job", args, tmp_path / "worker.log")
    try:
        await proc.wait_for_line(lambda s: s.startswith("job worker started: "), 30)
        jobs = await Jobs.init(JobSvcConfig(pg_con=db_dsn, exec_migrations=False))
        try:
            spawner = jobs.add_initializer(HoldInitializer())
            job = await spawner.spawn(HoldConfig(mode="complete"))
            assert (await jobs.await_completion(job.id, timeout=30)).state is JobState.COMPLETED
        finally:
            await jobs.shutdown()
        status, body = await anyio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        # The worker's run, counted by the provider the flag installed before the import.
        finished = re.search(r"^job_runs_finished_total\{(.*)\} (\S+)$", body, re.MULTILINE)
        assert finished is not None, body[-2000:]
        assert 'job_outcome="completed"' in finished.group(1)
        assert float(finished.group(2)) == 1.0
        proc.terminate()
        assert await proc.wait_exit(15) == 0
    finally:
        proc.close()


async def test_worker_metrics_port_in_use_fails_before_the_worker_starts(db_dsn):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = await cli(
            "worker", "tests.worker_targets:jobs", "--dsn", db_dsn, "--metrics-port", str(port)
        )
    assert (run.code, run.out) == (1, "")
    assert f"cannot serve metrics on 127.0.0.1:{port}" in run.err
