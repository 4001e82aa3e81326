"""The conformance suite: every test here runs once per backend (``make_jobs`` /
``job_database``).

A test in this directory reaches the stored rows only through ``job_database``'s methods (one
spelling per backend). A test that needs raw PostgreSQL (``db_dsn``) belongs in
``tests/backends/postgres``: collecting one here is an error, so that no behaviour test can
quietly run on one backend only.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    strays = [
        item.nodeid
        for item in items
        if "tests/conformance/" in item.nodeid and "db_dsn" in getattr(item, "fixturenames", ())
    ]
    if strays:
        raise pytest.UsageError(
            "conformance tests must be backend-neutral (job_database, not db_dsn);"
            " move these to tests/backends/postgres: " + ", ".join(strays)
        )
