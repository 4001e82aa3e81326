"""A watchdog that reports a blocked event loop, and the job that is blocking it.

A ticker task on the loop records ``time.monotonic()`` every ``TICK`` seconds. A daemon thread
checks the mark every ``TICK``; when it is older than ``blocked_loop_warning`` (plus one tick),
the loop is blocked: the thread logs ONE warning (logger ``job.watchdog``) naming the job whose
run is on the loop thread's stack (``sys._current_frames()``, walked outwards to the frame of
``Dispatcher._execute``, whose local ``row`` is the claimed job), or "no job" if the blocking
code is not inside a job run, and how long the loop has been blocked so far. When the ticker
runs again it logs one more warning with the stall's total duration. Heartbeats do not depend
on the loop (the backend's heartbeat thread), so a blocked loop does not get its jobs
reclaimed; the warning is what tells you a runner calls blocking code.

The thread is separate from the heartbeat thread so that a slow heartbeat statement cannot
delay the report. It ends with :meth:`LoopWatchdog.request_stop`, when the ticker task ends,
or when the loop is closed; while the loop is stopped (between two ``run_until_complete``
calls) it reports nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from types import CodeType, FrameType
from uuid import UUID

import anyio

from job._threads import LoopThread

logger = logging.getLogger("job.watchdog")

TICK = 0.1  # seconds between the ticker's marks, and between the thread's checks

NO_JOB = "no job (the application's own code)"


@dataclass(frozen=True, slots=True)
class Blocker:
    """What was running on the loop thread when a stall was detected."""

    job_id: UUID | None
    job_type: str | None
    where: str  # file:line (function) of the innermost Python frame, "" if none

    def describe(self) -> str:
        who = NO_JOB if self.job_type is None else f"job {self.job_id} ({self.job_type})"
        return f"{who}, at {self.where}" if self.where else who


def find_blocker(thread_id: int, run_code: CodeType) -> Blocker:
    """Which job's run is executing on thread ``thread_id`` right now.

    Walks that thread's current frames outwards to the frame running ``run_code`` (the code
    object of ``Dispatcher._execute``) and reads its local ``row`` (a ``ClaimedRow``).
    """
    frame: FrameType | None = sys._current_frames().get(thread_id)
    where = ""
    if frame is not None:
        code = frame.f_code
        where = f"{code.co_filename}:{frame.f_lineno} ({code.co_name})"
    while frame is not None:
        if frame.f_code is run_code:
            row = frame.f_locals.get("row")
            return Blocker(getattr(row, "id", None), getattr(row, "job_type", None), where)
        frame = frame.f_back
    return Blocker(None, None, where)


class LoopWatchdog(LoopThread):
    thread_name = "job-watchdog"

    def __init__(self, *, blocked_after: float, run_code: CodeType) -> None:
        super().__init__()
        self._blocked_after = blocked_after
        self._run_code = run_code
        self._loop_thread_id = 0
        self._last_tick = time.monotonic()
        self._ticking = False
        self._blocked_since: float | None = None
        self._blocker: Blocker | None = None
        self.stalls = 0  # stalls reported so far (diagnostics and tests)

    # -- on the event loop -------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; call on the event loop (its thread is the one watched)."""
        self._loop_thread_id = threading.get_ident()
        self._last_tick = time.monotonic()
        self._ticking = True
        super().start()

    async def run_ticker(self) -> None:
        """The loop's half: proves the loop is running, every ``TICK`` seconds."""
        try:
            while True:
                self._last_tick = time.monotonic()
                await anyio.sleep(TICK)
        finally:
            self._ticking = False  # no marks any more: not a stall

    # -- on the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        paused = False
        while not self._stop.wait(TICK):
            if not self._ticking or self._loop_closed():
                return
            if self._loop is not None and not self._loop.is_running():
                paused = True  # stopped between run_until_complete() calls: not blocked
                continue
            if paused:  # running again: measure from now, not from before the pause
                paused = False
                self._last_tick = max(self._last_tick, time.monotonic())
                continue
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """Compare the last mark with ``now``: report a stall's start, or its end."""
        last = self._last_tick
        stale = now - last
        if stale > self._blocked_after + TICK:
            if self._blocked_since is None:
                self._blocked_since = last
                self._blocker = find_blocker(self._loop_thread_id, self._run_code)
                self.stalls += 1
                self._log("the event loop has been blocked for %.1fs by %s%s", stale, ongoing=True)
        elif self._blocked_since is not None and last > self._blocked_since:
            # The ticker ran again; its mark came about one TICK after the loop resumed.
            self._log("the event loop was blocked for %.1fs by %s%s", last - self._blocked_since)
            self._blocked_since = None
            self._blocker = None

    def _log(self, message: str, secs: float, *, ongoing: bool = False) -> None:
        blocker = self._blocker or Blocker(None, None, "")
        hint = (
            ": a runner (or other code on the event loop) is calling blocking code; heartbeats"
            " go on from their own thread"
            if ongoing
            else ""
        )
        logger.warning(
            message,
            secs,
            blocker.describe(),
            hint,
            extra={
                "job_id": None if blocker.job_id is None else str(blocker.job_id),
                "job_type": blocker.job_type,
                "blocked_secs": round(secs, 3),
            },
        )
