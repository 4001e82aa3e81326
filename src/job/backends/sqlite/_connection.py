"""A ``sqlite3`` connection owned by one dedicated thread, driven from asyncio.

``sqlite3`` is a blocking driver. Each :class:`Connection` owns one ``sqlite3.Connection`` and
one daemon thread; ``await conn.run(fn, *args)`` hands a whole operation ``fn(db, *args)``
(several statements and their transaction) to that thread and resolves an asyncio future
through ``loop.call_soon_threadsafe`` when it is done: ONE thread hop per operation, however
many statements it runs. That is why this backend does not use aiosqlite, which hops to its
thread once per statement (and once per fetch).

An operation runs to its end in the thread even if the awaiting task is cancelled, so a
cancelled caller never leaves a transaction half done on a connection others reuse; and
:meth:`Connection.transact` rolls back instead of committing when its caller stopped waiting
before the COMMIT.

Operations on one connection run one at a time, in submission order.

Errors are translated into ``job.errors`` by :func:`translate_errors`, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from job.backends.sqlite import _queries as q
from job.errors import DatabaseError, DuplicateJobError, NotStartedError

__all__ = ["Connection", "connect", "run_in_transaction", "translate_errors"]

P = ParamSpec("P")
T = TypeVar("T")

# Primary result codes (the low byte of an extended code) worth retrying: another connection
# holds the lock longer than busy_timeout, a table is locked, an I/O hiccup, a full disk.
_TRANSIENT_CODES = frozenset({5, 6, 10, 13})  # SQLITE_BUSY, _LOCKED, _IOERR, _FULL
_TRANSIENT_MESSAGES = ("database is locked", "database table is locked", "disk i/o error")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn ``sqlite3`` errors (and values ``sqlite3`` cannot bind) into ``job.errors``.

    * a taken job id (the primary key of ``jobs``) -> ``DuplicateJobError``;
    * a lock held too long, an I/O error, a full disk -> ``DatabaseError(transient=True)``;
    * anything else ``sqlite3`` raises, and a ``UnicodeEncodeError`` / ``OverflowError`` from
      binding a value (a lone surrogate, an int beyond 64 bits) -> ``DatabaseError`` that is
      not transient: the same statement fails the same way every time (the outcome writer
      bisects a batch on exactly these).
    """
    try:
        yield
    except sqlite3.IntegrityError as exc:
        message = str(exc)
        if "jobs.id" in message or "job_executions.id" in message:
            raise DuplicateJobError(f"a job with this id already exists ({message})") from exc
        raise DatabaseError(f"database error: {message}", transient=False) from exc
    except sqlite3.Error as exc:
        raise DatabaseError(f"database error: {exc}", transient=_is_transient(exc)) from exc
    except (UnicodeEncodeError, OverflowError) as exc:
        raise DatabaseError(f"value cannot be stored in SQLite: {exc}", transient=False) from exc


def _is_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _TRANSIENT_CODES:
        return True
    message = str(exc).lower()
    return any(m in message for m in _TRANSIENT_MESSAGES)


def connect(
    path: str, busy_timeout: float, *, rows: bool = False, check_same_thread: bool = False
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (we issue BEGIN ourselves) with the backend's pragmas.

    ``journal_mode=WAL`` (readers never block the writer, nor it them), ``synchronous=NORMAL``
    (durable at checkpoints; a power cut may lose the last commits, never corrupt), foreign
    keys on, and ``busy_timeout``: how long a writer waits for another connection's lock
    before failing with "database is locked". Raises ``sqlite3.Error``.
    """
    db = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=check_same_thread,
        cached_statements=256,
    )
    try:
        if rows:
            db.row_factory = sqlite3.Row
        # sqlite3.connect(timeout=) is SQLite's busy timeout (sqlite3_busy_timeout).
        mode = _switch_to_wal(db, busy_timeout)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL journal mode ({mode!r})")
        db.execute(q.PRAGMA_SYNCHRONOUS)
        db.execute(q.PRAGMA_FOREIGN_KEYS)
    except BaseException:
        db.close()
        raise
    return db


def _switch_to_wal(db: sqlite3.Connection, busy_timeout: float) -> Any:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the file.

    WAL is a property of the file, so this is a no-op after its first success. That first
    switch needs the file to itself, and SQLite answers "database is locked" at once, without
    the busy handler, when several connections open a fresh file together (several processes
    starting on a new database). So we wait here, up to ``busy_timeout``, ourselves."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            row = db.execute(q.PRAGMA_WAL).fetchone()
        except sqlite3.OperationalError as exc:
            if not _is_transient(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
        else:
            return None if row is None else row[0]


def check_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, or a ``DatabaseError`` saying why it cannot be a job database."""
    text = os.fspath(path)
    if text in ("", ":memory:") or text.startswith("file:"):
        raise DatabaseError(
            f"the SQLite backend needs a database file path, got {text!r}: an in-memory or"
            " URI database cannot be shared by its connections"
        )
    parent = Path(text).absolute().parent
    if not parent.is_dir():
        raise DatabaseError(
            f"cannot open SQLite database {text}: directory {parent} does not exist"
        )
    return text


_Item = tuple[
    Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"
]


class Connection:
    """One ``sqlite3.Connection`` and the thread that alone uses it."""

    def __init__(self, path: str, busy_timeout: float, *, rows: bool = False) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._rows = rows
        self._db: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def open(self) -> None:
        """Start the thread and connect in it; raises ``DatabaseError`` if that fails."""
        self._thread = threading.Thread(target=self._serve, name="job-sqlite", daemon=True)
        self._thread.start()
        try:
            with translate_errors():
                await self._submit(self._connect)
        except BaseException:
            await self.close()
            raise

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(db, *args, **kwargs)`` in the connection's thread; its exceptions
        propagate as they are (callers translate them)."""
        if self._closed or self._thread is None:
            raise NotStartedError("the SQLite job backend is not open (or was closed)")
        return await self._submit(self._call, fn, args, kwargs)

    async def transact(self, begin: str, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op(db)`` in a transaction of its own (``begin`` opens it), committed in the
        thread. If the caller is cancelled before the COMMIT, the thread rolls back instead:
        a cancelled claim or spawn leaves nothing behind. (One cancelled after the COMMIT did
        happen, as with any database.)"""
        if self._closed or self._thread is None:
            raise NotStartedError("the SQLite job backend is not open (or was closed)")
        abandoned = threading.Event()
        future: asyncio.Future[T] = self._submit(
            self._call, run_in_transaction, (begin, op, abandoned.is_set), {}
        )
        future.add_done_callback(lambda f: abandoned.set() if f.cancelled() else None)
        return await future

    async def close(self) -> None:
        """Close the ``sqlite3`` connection (after the operations already submitted) and end
        the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        try:
            await self._submit(self._disconnect)
        finally:
            self._queue.put(None)

    # -- on the loop -------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, loop, future))
        return future

    # -- on the thread -----------------------------------------------------------------------

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, loop, future = item
            try:
                outcome: tuple[bool, Any] = (True, fn(*args))
            except BaseException as exc:
                outcome = (False, exc)
            # RuntimeError: the loop is closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future, outcome)
        self._disconnect()

    def _connect(self) -> None:
        self._db = connect(self.path, self._busy_timeout, rows=self._rows)

    def _disconnect(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        if self._db is None:
            raise NotStartedError("the SQLite job backend's connection is closed")
        return fn(self._db, *args, **kwargs)


class _AbandonedError(Exception):
    """The caller stopped waiting before the COMMIT: roll back (nobody sees this error)."""


def run_in_transaction(
    db: sqlite3.Connection,
    begin: str,
    op: Callable[[sqlite3.Connection], T],
    abandoned: Callable[[], bool] = lambda: False,
) -> T:
    """``op(db)`` between ``begin`` and COMMIT; rolled back if it raises or is abandoned."""
    db.execute(begin)
    try:
        result = op(db)
        if abandoned():
            raise _AbandonedError
        db.execute(q.COMMIT)
    except BaseException:
        if db.in_transaction:
            db.execute(q.ROLLBACK)
        raise
    return result


def _resolve(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # the caller was cancelled; the operation ran anyway
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class InlineWriter:
    """A connection the event loop's own thread writes through, for short writes that find
    SQLite's write lock free: no hop to a connection thread and back.

    On these machines each hop costs a thread wake-up both ways (~80 us apiece, measured),
    most of a single spawn's time. So :meth:`try_write` takes the lock without waiting (busy
    timeout 0): free, the write runs right here and commits (SQLite work of ~100 us); taken
    (another process, or this process's connection thread, is writing), it answers
    :data:`LOCK_TAKEN` at once and the caller goes through the thread, which may wait. The
    loop never blocks on a lock, and never on a checkpoint: this connection does not
    checkpoint as it commits (``wal_autocheckpoint = 0``); :meth:`checkpoint_due` says when
    the caller should have the main connection checkpoint, in its thread.
    """

    #: Commits through this connection between two checkpoints it asks for.
    checkpoint_every = 256

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db: sqlite3.Connection | None = db
        self._commits = 0

    @classmethod
    async def open(cls, main: Connection, path: str) -> InlineWriter:
        """Open it (in ``main``'s thread: opening reads the file) for use from the loop."""
        return cls(await main.run(lambda _db: _connect_inline(path)))

    def try_write(self, op: Callable[[sqlite3.Connection], T]) -> T | _LockTaken:
        """``op(db)`` in a BEGIN IMMEDIATE transaction, committed, if the lock is free now;
        else :data:`LOCK_TAKEN`. Raises what ``op`` or SQLite raise (untranslated)."""
        db = self._db
        if db is None:
            return LOCK_TAKEN
        try:
            db.execute(q.BEGIN_IMMEDIATE)
        except sqlite3.OperationalError as exc:
            if _is_transient(exc):
                return LOCK_TAKEN
            raise
        try:
            result = op(db)
            db.execute(q.COMMIT)
        except BaseException:
            if db.in_transaction:
                db.execute(q.ROLLBACK)
            raise
        self._commits += 1
        return result

    def checkpoint_due(self) -> bool:
        """True once per :attr:`checkpoint_every` commits made here."""
        if self._commits < self.checkpoint_every:
            return False
        self._commits = 0
        return True

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


class _LockTaken:
    __slots__ = ()

    def __repr__(self) -> str:
        return "LOCK_TAKEN"


#: :meth:`InlineWriter.try_write`'s answer when another writer holds the lock.
LOCK_TAKEN = _LockTaken()


def _connect_inline(path: str) -> sqlite3.Connection:
    db = connect(path, 0.0)
    try:
        db.execute(q.PRAGMA_NO_AUTOCHECKPOINT)
    except BaseException:
        db.close()
        raise
    return db


def checkpoint(db: sqlite3.Connection) -> None:
    db.execute(q.CHECKPOINT).fetchall()
