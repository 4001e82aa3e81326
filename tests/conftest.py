from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.database",
    "tests.fixtures.service",
    "job.testing.pytest_plugin",
]


@pytest.fixture
def anyio_backend() -> str:
    # psycopg's async API runs on asyncio only.
    return "asyncio"
