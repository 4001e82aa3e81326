from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from job.backends.sqlite import SqliteBackend


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
async def backend(db_path: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(db_path, uuid4())
    await b.open()
    await b.prepare_schema(migrate=True)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def raw(db_path: Path, backend: SqliteBackend) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the backend's file, as a tool outside the library."""
    db = sqlite3.connect(db_path, isolation_level=None, timeout=5.0)
    try:
        yield db
    finally:
        db.close()
