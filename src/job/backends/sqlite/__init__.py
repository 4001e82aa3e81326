"""The embedded SQLite backend (standard library ``sqlite3``, no server).

See :mod:`job.backends.sqlite.backend` for how it works and what it guarantees.
"""

from __future__ import annotations

from job.backends.sqlite.backend import SqliteBackend, SqliteTransaction

__all__ = ["SqliteBackend", "SqliteTransaction"]
