"""Connecting to PostgreSQL: a server that cannot be reached, or a DSN that is not one, is a
clear DatabaseError at Jobs.init, fast (libpq's connect errors, translated)."""

from __future__ import annotations

import time

import pytest

from job import DatabaseError, Jobs, JobSvcConfig

pytestmark = pytest.mark.anyio


async def test_invalid_dsn_is_a_clear_error_at_init():
    started = time.monotonic()
    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL"):
        await Jobs.init(JobSvcConfig(pg_con="postgresql://nobody@127.0.0.1:1/nothing"))
    assert time.monotonic() - started < 10
    with pytest.raises(DatabaseError, match="cannot connect"):
        await Jobs.init(JobSvcConfig(pg_con="this is not a dsn"))
