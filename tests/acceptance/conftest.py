from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance._harness import Launcher, create_runs_table


@pytest.fixture
def acc_dsn(db_dsn: str) -> str:
    """A fresh migrated database that also has the ``acceptance_runs`` table."""
    create_runs_table(db_dsn)
    return db_dsn


@pytest.fixture
def launcher(acc_dsn: str, tmp_path: Path) -> Iterator[Launcher]:
    """Starts worker/spawner processes; any still alive at teardown are SIGKILLed (before the
    database is dropped)."""
    launch = Launcher(acc_dsn, tmp_path)
    try:
        yield launch
    finally:
        launch.close()
