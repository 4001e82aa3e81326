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

from job._threads import HeartbeatLoop
from job.backends.postgres import _queries as q
from job.backends.postgres.connections import ConnectParams

logger = logging.getLogger("job.heartbeat")


class HeartbeatThread(HeartbeatLoop[psycopg.Connection[Any]]):
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
        super().__init__(live_ids=live_ids, interval=interval)
        self._params = params
        self._refresh_params = refresh_params
        self._instance_id = instance_id
        self._connect_timeout = connect_timeout

    # -- on the thread -----------------------------------------------------------------------

    def _refresh(self, conn: psycopg.Connection[Any], ids: list[UUID]) -> None:
        conn.execute(q.HEARTBEAT, {"ids": ids, "instance_id": self._instance_id})

    def _close(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()

    def _connect(self) -> psycopg.Connection[Any]:
        if self._refresh_params is not None and self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(self._new_params(), self._loop)
            try:
                self._params = future.result(timeout=1.0)
            except Exception:
                future.cancel()
                logger.debug("job heartbeat: keeping the previous connection parameters")
        return psycopg.connect(
            self._params.conninfo, **self._params.connect_kwargs(self._connect_timeout)
        )

    async def _new_params(self) -> ConnectParams:
        assert self._refresh_params is not None
        return await self._refresh_params()
