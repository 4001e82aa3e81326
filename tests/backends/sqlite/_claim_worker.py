"""A worker process for the two-process test: claims from one SQLite file until it is empty.

Usage: python _claim_worker.py DB_PATH. Prints "ready", waits for a line on stdin (so both
processes start claiming together); after its first claim that got rows it prints "first" and
waits for another line (so both hold claims before either drains the rest: on a loaded machine
one process could otherwise claim every job before the other was scheduled at all), then
claims until the file is empty and prints the id of every job it claimed, one a line.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from uuid import uuid4

from job import _events as ev
from job._backend import OutcomeWrite
from job.backends.sqlite import SqliteBackend


async def main(path: str) -> None:
    backend = SqliteBackend(path, uuid4(), busy_timeout=10.0)
    await backend.open()
    await backend.prepare_schema(migrate=False)
    print("ready", flush=True)
    sys.stdin.readline()
    claimed: list[str] = []
    empty = 0
    while empty < 3:
        rows = await backend.claim(["t"], 20, datetime.now(UTC))
        if not rows:
            empty += 1
            await asyncio.sleep(0.01)
            continue
        empty = 0
        if not claimed:
            print("first", flush=True)
            sys.stdin.readline()
        claimed.extend(str(r.id) for r in rows)
        writes = [
            OutcomeWrite(
                r.id,
                r.claim_token,
                True,
                None,
                r.attempt,
                [ev.completed(r.attempt), ev.job_completed("completed")],
            )
            for r in rows
        ]
        applied = await backend.apply_outcomes(writes, datetime.now(UTC))
        assert applied == {(r.id, r.claim_token) for r in rows}, "a fence failed"
    await backend.close()
    sys.stdout.write("".join(f"{i}\n" for i in claimed))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
