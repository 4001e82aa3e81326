"""Dedicated connections made like the pool's: the LISTEN connection and the heartbeat's.

Both are opened outside the pool (a LISTEN must stay on one connection; the heartbeat must not
depend on the event loop), with the pool's own ``conninfo`` and ``kwargs`` (each may be a
callable, sync or async, as psycopg_pool allows), in autocommit, and with a connect timeout so
that connecting can never hang.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class ConnectParams:
    """What ``psycopg.connect`` / ``AsyncConnection.connect`` need for a dedicated connection."""

    conninfo: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def connect_kwargs(self, timeout: float) -> dict[str, Any]:
        """The keyword arguments: the pool's, autocommit, and ``connect_timeout`` (libpq
        takes whole seconds and treats less than 2 as 2)."""
        options = {k: v for k, v in self.kwargs.items() if k != "autocommit"}
        options["autocommit"] = True
        options.setdefault("connect_timeout", max(math.ceil(timeout), 2))
        return options


async def pool_connect_params(pool: AsyncConnectionPool[Any]) -> ConnectParams:
    """The pool's conninfo and connection kwargs, with callables resolved."""
    conninfo: Any = pool.conninfo
    if callable(conninfo):
        conninfo = conninfo()
        if inspect.isawaitable(conninfo):
            conninfo = await conninfo
    kwargs: Any = pool.kwargs
    if callable(kwargs):
        kwargs = kwargs()
        if inspect.isawaitable(kwargs):
            kwargs = await kwargs
    return ConnectParams(str(conninfo), dict(kwargs or {}))
