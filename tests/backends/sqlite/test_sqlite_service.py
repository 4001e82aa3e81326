"""Jobs.init on SQLite: a database file that cannot be used is a clear DatabaseError at init,
at once (the SQLite counterpart of tests/backends/postgres/test_pg_connect.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from job import DatabaseError, Jobs, JobSvcConfig

pytestmark = pytest.mark.anyio


async def test_unusable_database_file_is_a_clear_error_at_init(tmp_path: Path):
    started = time.monotonic()
    missing_dir = tmp_path / "missing" / "jobs.sqlite3"
    with pytest.raises(DatabaseError, match=r"cannot open SQLite database .* does not exist"):
        await Jobs.init(JobSvcConfig(sqlite_path=missing_dir))
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(DatabaseError, match="cannot open SQLite database"):
        await Jobs.init(JobSvcConfig(sqlite_path=junk))
    with pytest.raises(DatabaseError, match="in-memory"):
        await Jobs.init(JobSvcConfig(sqlite_path=":memory:"))
    assert time.monotonic() - started < 10
    assert not missing_dir.parent.exists()  # nothing was created on the way
