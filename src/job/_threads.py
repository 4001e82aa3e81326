"""``LoopThread``: a daemon thread the service runs beside its event loop.

The heartbeat and the loop watchdog must keep working while the event loop is blocked, so
they are OS threads. Both are started on the loop (which they remember), told to stop by an
event, and joined with a bound at shutdown; this base holds that lifecycle once.
"""

from __future__ import annotations

import asyncio
import threading


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
