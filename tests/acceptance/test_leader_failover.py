"""Leader failover across real processes (PostgreSQL): three workers with a 2 s leader lease;
the leader is SIGKILLed (no clean release); another worker must hold the lease within two
lease lengths, and only one at a time."""

from __future__ import annotations

import time
from uuid import UUID

import anyio
import pytest

from tests.acceptance._harness import Launcher, connect, fetch, figures

LEASE = 2.0


async def holder(dsn: str) -> UUID | None:
    async with connect(dsn) as conn:
        rows = await fetch(
            conn,
            "SELECT holder FROM job_leases WHERE name = 'maintenance'"
            " AND expires_at >= clock_timestamp()",
        )
    return rows[0][0] if rows else None


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_a_killed_leader_is_replaced_within_two_leases(acc_dsn: str, launcher: Launcher):
    workers = [launcher.worker(f"w{i}", leader_lease=LEASE) for i in range(3)]
    for worker in workers:
        await worker.wait_ready()
    by_id = {w.instance_id: w for w in workers}
    deadline = time.monotonic() + 10
    while (first := await holder(acc_dsn)) is None:
        assert time.monotonic() < deadline, "nobody took the lease"
        await anyio.sleep(0.02)  # polling the database: no event to wait on
    assert first in by_id
    by_id[first].kill()
    killed_at = time.monotonic()
    while True:
        now_holder = await holder(acc_dsn)
        if now_holder is not None and now_holder != first:
            took = time.monotonic() - killed_at
            break
        assert time.monotonic() - killed_at < 3 * LEASE, "no new leader"
        await anyio.sleep(0.02)
    assert now_holder in by_id and by_id[now_holder].alive()
    assert took <= 2 * LEASE, f"the new leader took {took:.2f}s (lease {LEASE}s)"
    figures("leader-failover", {"lease_s": LEASE, "takeover_s": round(took, 2)})
