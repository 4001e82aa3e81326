"""The ``job`` command line, run for real as a subprocess: the demo and ``migrate``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

BATCH = 100


def run_cli(
    *args: str, timeout: float = 60, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOB_DATABASE_URL"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "job", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.timeout(150)
def test_demo_runs_every_job_to_its_expected_state_on_postgres(db_dsn):
    proc = run_cli("demo", "--dsn", db_dsn, "--jobs", str(BATCH), timeout=120)
    assert "backend: PostgreSQL, database" in proc.stdout
    check_demo_output(proc)


@pytest.mark.timeout(150)
def test_demo_runs_on_sqlite_by_default_with_no_postgres_anywhere(tmp_path):
    """The zero-setup main job: no arguments, no server, no PostgreSQL binaries on PATH."""
    bare = tmp_path / "bin"
    bare.mkdir()
    proc = run_cli("demo", "--jobs", str(BATCH), timeout=120, path=str(bare))
    assert "backend: SQLite, a temporary file" in proc.stdout
    assert "job service started on sqlite" in proc.stdout
    check_demo_output(proc)


def check_demo_output(proc: subprocess.CompletedProcess[str]) -> None:
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr}"

    # The final table has a row per featured job with its state, runs and last error.
    rows = {
        m.group("job"): m
        for m in re.finditer(
            r"^(?P<job>checksum|flaky|report|cleanup)\s+(?P<id>[0-9a-f]{8})\s+"
            r"(?P<state>\w+)\s+(?P<runs>\d+)\s+(?P<error>.*)$",
            out,
            re.MULTILINE,
        )
    }
    assert set(rows) == {"checksum", "flaky", "report", "cleanup"}, out
    assert {job: m["state"] for job, m in rows.items()} == dict.fromkeys(rows, "completed")
    runs = {job: int(m["runs"]) for job, m in rows.items()}
    assert runs == {"checksum": 1, "flaky": 3, "report": 1, "cleanup": 2}
    assert "simulated connection reset on attempt 2" in rows["flaky"]["error"]
    assert rows["checksum"]["error"].strip() == "-"

    # ...and one row for the whole batch, every job of which completed.
    assert re.search(rf"^batch\s+x{BATCH}\s+{BATCH} completed\s+{BATCH}\s", out, re.MULTILINE)
    assert re.search(r"= \d+(\.\d+)? jobs/s$", out, re.MULTILINE), out
    assert "created=False, same job: True" in out
    assert "[FAIL]" not in out
    assert "demo OK" in out


def test_migrate_applies_then_reports_nothing_pending(empty_db_dsn):
    first = run_cli("migrate", "--dsn", empty_db_dsn)
    assert first.returncode == 0, first.stderr
    assert re.search(r"^applied migrations: 1(, \d+)*$", first.stdout, re.MULTILINE)

    second = run_cli("migrate", "--dsn", empty_db_dsn)
    assert second.returncode == 0, second.stderr
    assert "no pending migrations" in second.stdout
    assert "schema at version" in second.stdout


def test_migrate_without_a_database_is_a_usage_error():
    proc = run_cli("migrate")
    assert proc.returncode == 2
    assert "--dsn" in proc.stderr


def test_migrate_sqlite_applies_then_reports_nothing_pending(tmp_path):
    path = str(tmp_path / "jobs.db")
    first = run_cli("migrate", "--sqlite", path)
    assert first.returncode == 0, first.stderr
    assert "applied migrations: 1" in first.stdout
    second = run_cli("migrate", "--sqlite", path)
    assert second.returncode == 0 and "no pending migrations" in second.stdout
    missing = run_cli("migrate", "--sqlite", str(tmp_path / "no" / "such" / "dir.db"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
