"""Heartbeats from a thread of their own, so a blocked event loop cannot stop them.

A runner that blocks the event loop (``time.sleep``, a CPU-bound loop, a synchronous driver)
stops every coroutine of its worker. If heartbeats ran there, another worker would reclaim the
still-running job after ``job_lost_interval`` and run it again, and the job could ping-pong
between workers until its attempts ran out. So heartbeats run in a daemon thread that owns one
synchronous autocommit connection (made like the pool's, ``connections.py``): every
``job_lost_interval / 4`` it refreshes ``alive_at`` of the jobs this process really runs
(``Dispatcher.live_ids``, one atomic copy of a dict's keys under the GIL), whatever the loop is
doing. After a failure it closes the connection and reconnects with backoff (capped at the
interval). It connects on the first heartbeat with something to refresh, not before.

It stops when :meth:`HeartbeatThread.request_stop` is called (shutdown, after the running
rows were handed back), or by itself once the event loop is closed, so a process whose loop
ended without a shutdown does not keep its rows alive. (A loop that is merely stopped, between
two ``run_until_complete`` calls, still has its runs: they go on being heartbeated.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import psycopg

from job._threads import LoopThread
from job.backends.postgres import _queries as q
from job.backends.postgres.connections import ConnectParams

logger = logging.getLogger("job.heartbeat")


class HeartbeatThread(LoopThread):
    thread_name = "job-heartbeat"

    def __init__(
        self,
        *,
        params: ConnectParams,
        refresh_params: Callable[[], Awaitable[ConnectParams]] | None,
        instance_id: UUID,
        live_ids: Callable[[], list[UUID]],
        interval: float,
        connect_timeout: float,
    ) -> None:
        """``refresh_params``, if given (the pool's conninfo or kwargs is a callable), is run
        on the event loop before each reconnect; if the loop does not answer within a second
        (it may be the one that is blocked), the previous parameters are used."""
        super().__init__()
        self._params = params
        self._refresh_params = refresh_params
        self._instance_id = instance_id
        self._live_ids = live_ids
        self._interval = interval
        self._connect_timeout = connect_timeout
        self.beats = 0  # heartbeat statements that succeeded (diagnostics and tests)

    # -- on the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
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
                    logger.error("job heartbeat failed (%d in a row)", failures, exc_info=True)
                    if conn is not None:
                        conn.close()
                    conn = None
                    wait = min(0.1 * 2**failures, self._interval)
        finally:
            if conn is not None:
                conn.close()

    def _beat(self, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any] | None:
        try:
            ids = self._live_ids()
        except RuntimeError:  # changed while being copied: the next tick gets them
            return conn
        if not ids:
            return conn
        if conn is None or conn.closed:
            conn = self._connect()
        conn.execute(q.HEARTBEAT, {"ids": ids, "instance_id": self._instance_id})
        self.beats += 1
        return conn

    def _connect(self) -> psycopg.Connection[Any]:
        if self._refresh_params is not None and self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(self._refresh(), self._loop)
            try:
                self._params = future.result(timeout=1.0)
            except Exception:
                future.cancel()
                logger.debug("job heartbeat: keeping the previous connection parameters")
        return psycopg.connect(
            self._params.conninfo, **self._params.connect_kwargs(self._connect_timeout)
        )

    async def _refresh(self) -> ConnectParams:
        assert self._refresh_params is not None
        return await self._refresh_params()
