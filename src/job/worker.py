"""Running a ``Jobs`` service as a worker that stops gracefully on SIGTERM and SIGINT.

Two ways to use it:

* the command ``python -m job worker MODULE:ATTR`` (or ``job worker ...``), which imports the
  target, runs :func:`run_worker` on it and exits 0 after a graceful shutdown;
* :func:`install_signal_handlers`, for an application that runs ``Jobs`` inside its own
  asyncio program::

      with install_signal_handlers(jobs) as stop:
          await stop.wait()   # returns once the first signal's jobs.shutdown() has finished

The first SIGTERM or SIGINT starts ``jobs.shutdown()``: stop claiming, let running jobs finish
within ``shutdown_timeout``, hand the rest back to pending (``execution_aborted``). A second
one while that is under way ends the process at once with ``os._exit(128 + signum)`` (130 for
SIGINT, 143 for SIGTERM): the rows of jobs still running then stay ``running`` until lost-job
recovery runs them again, after ``job_lost_interval``. POSIX only (``loop.add_signal_handler``),
main thread only. See docs/worker.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable
from signal import Signals
from types import TracebackType
from typing import Any, Self

from job.service import Jobs

__all__ = [
    "SIGNALS",
    "ShutdownSignals",
    "WorkerTargetError",
    "import_target",
    "install_signal_handlers",
    "jobs_from_target",
    "run_worker",
]

logger = logging.getLogger("job.worker")

#: The signals that stop a worker.
SIGNALS: tuple[Signals, ...] = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, Any], Any] | int | signal.Handlers | None


class ShutdownSignals:
    """SIGTERM/SIGINT handlers for one ``Jobs`` service, installed on an asyncio loop.

    Made by :func:`install_signal_handlers`. Usable as a (synchronous) context manager: the
    previous handlers come back on exit, or on :meth:`remove`.
    """

    def __init__(
        self, jobs: Jobs, loop: asyncio.AbstractEventLoop, *, shutdown: bool = True
    ) -> None:
        self._jobs = jobs
        self._loop = loop
        self._shutdown = shutdown
        self._received = asyncio.Event()
        self._signal: Signals | None = None
        self._task: asyncio.Task[None] | None = None
        self._previous: dict[Signals, _Handler] = {}

    def _install(self) -> None:
        try:
            for sig in SIGNALS:
                previous = signal.getsignal(sig)
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                self._previous[sig] = previous
        except BaseException:
            self.remove()
            raise

    @property
    def signal(self) -> Signals | None:
        """The first signal received, or None."""
        return self._signal

    @property
    def requested(self) -> bool:
        """Whether a signal has asked this process to stop."""
        return self._signal is not None

    async def wait(self) -> Signals:
        """Wait for the first signal and return it. With ``shutdown=True`` (the default), also
        wait until the ``jobs.shutdown()`` it started has finished (its error is raised)."""
        await self._received.wait()
        if self._task is not None:
            await asyncio.shield(self._task)
        assert self._signal is not None
        return self._signal

    def remove(self) -> None:
        """Put back the handlers that were there before (idempotent)."""
        for sig, previous in self._previous.items():
            if not self._loop.is_closed():
                self._loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
        self._previous.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def _on_signal(self, sig: Signals) -> None:
        if self._signal is not None:
            _exit_now(sig)
        self._signal = sig
        logger.warning(
            "received %s: shutting down (running jobs get up to shutdown_timeout to finish,"
            " the rest are handed back); send it again to exit at once",
            sig.name,
        )
        if self._shutdown:
            self._task = self._loop.create_task(self._jobs.shutdown(), name="job-signal-shutdown")
        self._received.set()


def _exit_now(sig: Signals) -> None:
    code = 128 + int(sig)
    logger.critical(
        "received %s again: exiting at once with status %d; jobs still running stay 'running'"
        " until lost-job recovery runs them again (after job_lost_interval)",
        sig.name,
        code,
    )
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def install_signal_handlers(
    jobs: Jobs,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    shutdown: bool = True,
) -> ShutdownSignals:
    """Handle SIGTERM and SIGINT for ``jobs`` on ``loop`` (default: the running loop).

    The first signal schedules ``jobs.shutdown()`` (unless ``shutdown=False``: then it is only
    recorded, for a caller that shuts down itself) and wakes :meth:`ShutdownSignals.wait`. A
    second one exits the process at once with status ``128 + signum``. Call it from the main
    thread; use the result as a context manager, or call ``remove()``, to restore the previous
    handlers. Install it after ``Jobs.init`` (a shutdown cannot interrupt ``open()``).
    """
    handlers = ShutdownSignals(
        jobs, loop if loop is not None else asyncio.get_running_loop(), shutdown=shutdown
    )
    handlers._install()
    return handlers


async def run_worker(jobs: Jobs, *, on_started: Callable[[Jobs], object] | None = None) -> Signals:
    """Run ``jobs`` as a worker until SIGTERM or SIGINT, then shut it down gracefully.

    Opens the service unless it is already open, starts polling, calls ``on_started(jobs)``,
    waits for a signal, then ``await jobs.shutdown()``; returns the signal. A signal that
    arrives while the service opens lets the open finish, skips polling and shuts down. A
    second signal exits the process at once (see :func:`install_signal_handlers`).
    """
    with install_signal_handlers(jobs, shutdown=False) as signals:
        async with jobs:  # opens it if it is new; shuts it down on the way out, even on error
            if not signals.requested:
                await jobs.start_poll()
                logger.info(
                    "worker started: instance %s, job types %s, pid %d",
                    jobs.instance_id,
                    ", ".join(jobs.job_types) or "(none)",
                    os.getpid(),
                )
                if on_started is not None:
                    on_started(jobs)
            sig = await signals.wait()
            await jobs.shutdown()
        logger.info("worker stopped after %s", sig.name)
        return sig


# -- the command's target ----------------------------------------------------------------------


class WorkerTargetError(Exception):
    """The worker's ``MODULE:ATTR`` target cannot be imported or is not a ``Jobs`` source."""


def import_target(spec: str) -> object:
    """Import ``MODULE`` and return ``MODULE.ATTR`` (``ATTR`` may be dotted).

    Raises :class:`WorkerTargetError` with a one-line explanation; an exception raised by the
    module's own code is its ``__cause__``.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise WorkerTargetError(f"target {spec!r} is not MODULE:ATTR (e.g. my_app.jobs:jobs)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise WorkerTargetError(
                f"cannot import {module_name!r}: no module named {missing!r} (the worker"
                " looks in the current directory and on sys.path/PYTHONPATH)"
            ) from None
        raise WorkerTargetError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise WorkerTargetError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: object = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise WorkerTargetError(
                f"module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return target


async def jobs_from_target(target: object, spec: str = "the target") -> Jobs:
    """``target`` if it is a ``Jobs``; else call it with no arguments (awaiting the result if
    it is awaitable) and return the ``Jobs`` it returns. Raises :class:`WorkerTargetError`
    for anything else; exceptions raised by the callable itself propagate."""
    if isinstance(target, Jobs):
        return target
    if not callable(target):
        raise WorkerTargetError(
            f"{spec} is not a Jobs instance or a zero-argument callable returning one (it is"
            f" of type {type(target).__name__})"
        )
    try:
        inspect.signature(target).bind()
    except TypeError:
        raise WorkerTargetError(
            f"{spec} must be a Jobs instance or callable with no arguments"
        ) from None
    except ValueError:
        pass  # no signature to check (some builtins): just call it
    result = target()
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, Jobs):
        raise WorkerTargetError(
            f"{spec}() returned an object of type {type(result).__name__}, not a Jobs"
        )
    return result
