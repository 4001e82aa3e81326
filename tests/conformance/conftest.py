"""The conformance suite: every test here runs once per backend (``make_jobs`` /
``job_database``).

Tests that still reach the database with raw PostgreSQL SQL (they ask for ``db_dsn``) are not
backend-neutral yet; on SQLite they are skipped, visibly, with the reason below, until they are
converted to ``job_database``'s methods (tracked in the issue 7 note).
"""

from __future__ import annotations

import pytest

NOT_CONVERTED = "raw PostgreSQL SQL (db_dsn): not yet converted to job_database, Postgres only"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("backend_name") != "sqlite":
            continue
        if "db_dsn" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=NOT_CONVERTED))
