"""LISTEN/NOTIFY wake-ups between processes, kept out of business transactions.

Notifications are hints: a lost one costs latency, never correctness, because the poller
re-polls at the next due time (at most ``max_poll_wait``) and completion waiters sweep.

* The **emitter** publishes after commit. Payloads queued while a publish is in flight are
  coalesced (and de-duplicated) into the next single ``pg_notify`` statement. A payload is sent
  at once unless the same payload went out less than ``REPEAT_WINDOW`` ago; then it is sent
  once at the end of that window (a trailing edge, so the last spawn of a burst always wakes
  the pollers). An idle system pays one round trip of latency; a loop of single spawns pays one
  NOTIFY per window instead of one per spawn (a NOTIFY per spawn cost about 40% of single-spawn
  throughput on 2 cores). A failed publish never turns a committed spawn into an error. A
  retryable failure (connection lost, server restarting) is retried with backoff. Any other
  failure cannot be cured by retrying, so it must not block the payloads queued behind it: the
  batch is re-sent one payload at a time, and a payload the database refuses is logged and
  dropped, replaced by one generic wake-up (``ANY_READY_PAYLOAD``).
* A **single spawn** carries its wake-up in its own insert statement (``take_inline``),
  delivered when it commits: no round trip of its own, and the listener hears of the job
  about 0.3 ms sooner (bench: pickup latency). The repeat window still applies: a spawn within
  the window of the previous copy publishes through the emitter as above, and the first spawn
  after the window closes carries the queued copy in its own statement. The emitter sends the
  copy only if no spawn came before its timer (a loop of 4,000 awaited spawns here: 95 NOTIFY
  statements instead of 352).
* A payload is never too long for ``pg_notify`` (which refuses 8000 bytes or more): one longer
  than ``MAX_PAYLOAD_BYTES`` is sent as ``ANY_READY_PAYLOAD``, an ``execution_ready`` without
  a ``job_type``, which every listener treats as "a job of any type may be ready".
* The **listener** holds one dedicated connection with ``LISTEN job_events`` and reconnects by
  itself after a failure, with backoff; after a reconnect it wakes the poller once, since the
  notifications sent meanwhile are gone. Each attempt (connect and ``LISTEN``) is bounded by
  ``connection_timeout``. ``Jobs.start_poll()`` waits for the first attempt only: if it fails,
  polling starts anyway (the poller's ``max_poll_wait`` backstop finds new jobs), one warning
  is logged, and the listener keeps reconnecting in the background.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import anyio
import psycopg
from anyio.abc import TaskStatus

from job import _events as ev
from job.backends.postgres.repository import NOTIFY_CHANNEL, Repository
from job.errors import DatabaseError

logger = logging.getLogger(__name__)

# Seconds within which the same notification is not sent twice (see the module docstring).
REPEAT_WINDOW = 0.005

# pg_notify refuses a payload of 8000 bytes or more in the server's encoding. Valid payloads
# are under 200 bytes (job types are at most 128 characters); half the limit leaves room for
# any encoding a UTF-8 payload may be converted to.
MAX_PAYLOAD_BYTES = 3999

# An execution_ready without a job_type: "a job of any type may be ready" (wakes every poller).
ANY_READY_PAYLOAD = json.dumps({"type": ev.EXECUTION_READY})
# "Some job reached a terminal state": one constant payload, so a burst of completions is
# coalesced into one notification per REPEAT_WINDOW; listeners re-check their waiters.
TERMINAL_PAYLOAD = json.dumps({"type": ev.JOB_TERMINAL})
# "This job was asked to cancel": the process running it signals its runner.
CANCEL_KIND = "job_cancel"


def cancel_payload(job_id: UUID) -> str:
    return json.dumps({"type": CANCEL_KIND, "id": str(job_id)})


def sendable(payload: str) -> str:
    """``payload``, or ``ANY_READY_PAYLOAD`` if it is too long for ``pg_notify``."""
    if len(payload.encode("utf-8", "replace")) <= MAX_PAYLOAD_BYTES:
        return payload
    return ANY_READY_PAYLOAD


@functools.lru_cache(maxsize=1024)
def ready_payload(job_type: str) -> str:
    """The wake-up for ``job_type`` (cached: built for every spawn, one per type)."""
    return sendable(json.dumps({"type": ev.EXECUTION_READY, "job_type": job_type}))


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, DatabaseError) and exc.is_retryable


def _backoff(failures: int, cap: float) -> float:
    return float(min(0.1 * 2**failures, cap))


class Notifier:
    def __init__(
        self,
        repo: Repository,
        *,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
    ) -> None:
        self._repo = repo
        self._connect = connect
        self._on_ready: Callable[[str | None], None] = lambda job_type: None
        #: Called when another process announces finished jobs (completion waiters).
        self.on_terminal: Callable[[], None] = lambda: None
        #: Called with a job id when a process announces a cancel request (None: re-check all).
        self.on_cancel: Callable[[UUID | None], None] = lambda job_id: None
        self._pending: set[str] = set()
        self._sent_at: dict[str, float] = {}  # payload -> monotonic time it was last sent
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()

    # -- emitter -----------------------------------------------------------------------------

    def publish(self, payload: str) -> None:
        self._pending.add(sendable(payload))
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._wake.set()

    def take_inline(self, payload: str) -> bool:
        """May the caller send ``payload`` in its own statement now (see the module
        docstring)? Yes unless it went out within ``REPEAT_WINDOW``. A yes counts as sent
        now, and takes the payload off the emitter's queue if it was waiting there for its
        window to close: the statement carries it instead of a NOTIFY round trip of its own.
        A caller whose statement then fails must ``publish`` it again (the copy it took may
        have been owed to earlier commits)."""
        now = time.monotonic()
        if now - self._sent_at.get(payload, -1e9) < REPEAT_WINDOW:
            return False
        self._pending.discard(payload)
        self._sent_at[payload] = now
        return True

    async def run_emitter(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            now = time.monotonic()
            payloads = sorted(
                p for p in self._pending if now - self._sent_at.get(p, -1e9) >= REPEAT_WINDOW
            )
            if payloads:
                self._pending.difference_update(payloads)
                try:
                    sent = await self._send(payloads)
                    failures = 0
                    now = time.monotonic()
                    self._sent_at.update(dict.fromkeys(sent, now))
                except Exception:  # retryable only: _send drops what cannot ever be sent
                    failures += 1
                    logger.warning("job notification publish failed; will retry", exc_info=True)
                    self._pending.update(payloads)
                    self._wake.set()
                    await anyio.sleep(min(0.05 * 2**failures, 5.0))
            if self._pending:
                # Only recently-sent payloads remain: send them when their window closes.
                earliest = min(self._sent_at.get(p, now) for p in self._pending)
                await anyio.sleep(max(earliest + REPEAT_WINDOW - time.monotonic(), 0.0))
                self._wake.set()
            else:
                self._idle.set()
                if len(self._sent_at) > 1024:  # forget old payloads (one per job type)
                    self._sent_at.clear()

    async def _send(self, payloads: list[str]) -> list[str]:
        """Publish ``payloads``; return those sent. Raises only retryable errors (the caller
        retries the batch); a payload the database refuses otherwise is dropped, alone."""
        try:
            await self._repo.notify(payloads)
            return payloads
        except Exception as exc:
            if _is_retryable(exc):
                raise
            if len(payloads) == 1:
                self._drop(payloads[0], exc)
                return []
        sent = []
        for payload in payloads:  # isolate the payload(s) the database refuses
            try:
                await self._repo.notify([payload])
                sent.append(payload)
            except Exception as exc:
                if _is_retryable(exc):
                    raise
                self._drop(payload, exc)
        return sent

    def _drop(self, payload: str, exc: BaseException) -> None:
        logger.warning(
            "job notification %r refused by the database, dropped (pollers are woken with a"
            " generic wake-up instead): %s",
            payload[:200],
            exc,
        )
        if payload != ANY_READY_PAYLOAD:
            self._pending.add(ANY_READY_PAYLOAD)
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything published so far has been sent (in flight included)."""
        await self._idle.wait()

    # -- listener ----------------------------------------------------------------------------

    async def run_listener(
        self,
        on_ready: Callable[[str | None], None],
        attempt_timeout: float,
        *,
        task_status: TaskStatus[None],
    ) -> None:
        """Hold the LISTEN connection, calling ``on_ready(job_type)`` per wake-up (``None``: a
        job of any type may be ready). Reports started after the first attempt, whether it
        succeeded or not (polling must not wait for wake-ups), bounded by ``attempt_timeout``."""
        self._on_ready = on_ready
        started = False
        failures = 0
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                with anyio.fail_after(attempt_timeout):
                    conn = await self._connect()
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            except (psycopg.Error, OSError, TimeoutError):
                if conn is not None:
                    await conn.close()
                failures += 1
                if not started:
                    logger.warning(
                        "job listener could not connect at start; polling without wake-ups"
                        " (new jobs are found within max_poll_wait) and reconnecting in the"
                        " background",
                        exc_info=True,
                    )
                    started = True
                    task_status.started()
                elif failures == 1:
                    logger.error("job listener could not connect; retrying", exc_info=True)
                else:
                    logger.debug("job listener could not connect (%d in a row)", failures)
                await anyio.sleep(_backoff(failures, 5.0))
                continue
            try:
                async with conn:
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        if failures:
                            logger.info(
                                "job listener connected after %d failed attempt(s)", failures
                            )
                        # Notifications sent while we were away are gone: poll once anyway.
                        self._wake_all()
                    failures = 0
                    async for notify in conn.notifies():
                        self._dispatch(notify.payload)
            except (psycopg.Error, OSError):
                failures = 1
                logger.error("job listener connection lost; reconnecting", exc_info=True)
                await anyio.sleep(_backoff(failures, 5.0))

    def _wake_all(self) -> None:
        self._on_ready(None)
        self.on_terminal()  # completions announced while we were not listening
        self.on_cancel(None)  # and cancel requests

    def _dispatch(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            kind = message["type"]
            if kind == ev.EXECUTION_READY:
                job_type = message.get("job_type")
                if job_type is None:  # ANY_READY_PAYLOAD: a job of any type may be ready
                    self._wake_all()
                else:
                    self._on_ready(str(job_type))
            elif kind == ev.JOB_TERMINAL:
                self.on_terminal()
            elif kind == CANCEL_KIND:
                self.on_cancel(UUID(str(message["id"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignoring malformed job notification: %r", payload[:200])
