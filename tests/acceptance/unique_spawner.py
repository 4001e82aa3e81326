"""One contender in the ``spawn_unique`` race: ``python -m tests.acceptance.unique_spawner``.

Opens a ``Jobs`` service (spawning side only), prints ``READY``, then for each round waits for
the file ``<go-dir>/go-<round>`` to appear and at once calls ``spawn_unique`` with that round's
key, printing one JSON line ``{"round", "key", "created", "id", "pid"}``. Round 0 uses the
default key (a singleton type); round ``r`` > 0 uses ``race-<r>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from job import Jobs, JobSvcConfig
from tests.acceptance.worker import WorkConfig, WorkInitializer


def round_key(round_no: int) -> str:
    return "" if round_no == 0 else f"race-{round_no}"


async def _main(args: argparse.Namespace) -> int:
    go_dir = Path(args.go_dir)
    jobs = await Jobs.init(JobSvcConfig(pg_con=args.dsn, exec_migrations=False))
    try:
        spawner = jobs.add_initializer(WorkInitializer(args.type))
        print("READY", flush=True)
        for round_no in range(args.rounds):
            go = go_dir / f"go-{round_no}"
            while True:  # the barrier: every contender fires as soon as the file appears
                if go.exists():
                    break
                await asyncio.sleep(0.0005)
            key = round_key(round_no)
            result = await spawner.spawn_unique(WorkConfig(seq=os.getpid()), key=key)
            line = {
                "round": round_no,
                "key": key,
                "created": result.created,
                "id": str(result.job.id),
                "pid": os.getpid(),
            }
            print(json.dumps(line), flush=True)
    finally:
        await jobs.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.acceptance.unique_spawner")
    p.add_argument("--dsn", required=True)
    p.add_argument("--go-dir", required=True)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--type", default="acc_unique")
    return asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
