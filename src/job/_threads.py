"""``LoopThread``: a daemon thread the service runs beside its event loop.

The heartbeat and the loop watchdog must keep working while the event loop is blocked, so
they are OS threads. Both are started on the loop (which they remember), told to stop by an
event, and joined with a bound at shutdown; this base holds that lifecycle once.
``HeartbeatLoop`` holds the heartbeat's loop once for every backend.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar
from uuid import UUID

Conn = TypeVar("Conn")
_heartbeat_logger = logging.getLogger("job.heartbeat")


class LoopThread:
    """Subclasses implement ``_run`` (on the thread) and wait on ``self._stop``."""

    thread_name = "job-thread"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the thread; call on the event loop (the loop it serves)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) for the thread to end; True if it did."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _loop_closed(self) -> bool:
        return self._loop is not None and self._loop.is_closed()

    def _run(self) -> None:
        raise NotImplementedError


class HeartbeatLoop(LoopThread, Generic[Conn]):
    """The heartbeat thread's loop, the same for every backend: every ``interval`` seconds,
    refresh ``alive_at`` of the runs this process really has (``live_ids()``) through a
    connection of the thread's own, opened on the first beat with something to refresh. After
    a failure it closes that connection and reconnects with backoff (capped at the interval).
    It ends on :meth:`request_stop`, or by itself once the event loop is closed, so a process
    whose loop ended without a shutdown does not keep its rows alive.

    Backends implement ``_connect``, ``_refresh(conn, ids)`` and ``_close(conn)``.
    """

    thread_name = "job-heartbeat"

    def __init__(self, *, live_ids: Callable[[], list[UUID]], interval: float) -> None:
        super().__init__()
        self._live_ids = live_ids
        self._interval = interval
        self.beats = 0  # heartbeats that succeeded (diagnostics and tests)

    def _connect(self) -> Conn:
        raise NotImplementedError

    def _refresh(self, conn: Conn, ids: list[UUID]) -> None:
        raise NotImplementedError

    def _close(self, conn: Conn) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        conn: Conn | None = None
        failures = 0
        wait = self._interval
        try:
            while not self._stop.wait(wait):
                if self._loop_closed():
                    return  # the service's loop ended without a shutdown
                try:
                    conn = self._beat(conn)
                    failures = 0
                    wait = self._interval
                except Exception:
                    failures += 1
                    _heartbeat_logger.error(
                        "job heartbeat failed (%d in a row)", failures, exc_info=True
                    )
                    if conn is not None:
                        self._close(conn)
                    conn = None
                    wait = min(0.1 * 2**failures, self._interval)
        finally:
            if conn is not None:
                self._close(conn)

    def _beat(self, conn: Conn | None) -> Conn | None:
        try:
            ids = self._live_ids()
        except RuntimeError:  # changed while being copied: the next tick gets them
            return conn
        if not ids:
            return conn
        if conn is None:
            conn = self._connect()
        self._refresh(conn, ids)
        self.beats += 1
        return conn
