"""A process for test_cron_processes: ``python -m tests.acceptance.cron_worker
(--dsn DSN | --sqlite PATH) --clock-file PATH``, run from the repository root.

It registers the schedule ``*/5 * * * *`` of the job type ``ca_cron`` on a manual clock and
does not poll (nothing runs the jobs: the test counts what was spawned). The test drives time
through the clock file: each time its content changes to ``<round> <ISO time>``, this process
moves its clock to that time, fires the due schedules (``Jobs.run_schedules_once``, as the
leader would) and prints ``FIRED <round>``. It prints ``READY`` first and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from job import (
    ClockHandle,
    Complete,
    CurrentJob,
    JobCompletion,
    JobInitializer,
    JobRunner,
    Jobs,
    JobSvcConfig,
)
from tests.acceptance.worker import stop_when_orphaned

START = "2026-06-01T12:00:30+00:00"


class Tick(BaseModel):
    pass


class TickRunner(JobRunner[Tick]):
    async def run(self, current_job: CurrentJob[Tick]) -> JobCompletion:
        return Complete()


class TickInitializer(JobInitializer[Tick]):
    job_type = "ca_cron"

    def init(self, config: Tick) -> JobRunner[Tick]:
        return TickRunner()


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def follow(jobs: Jobs, controller: Any, clock_file: Path, stop: asyncio.Event) -> None:
    seen = ""
    while not stop.is_set():
        text = await asyncio.to_thread(_read, clock_file)
        if text and text != seen:
            seen = text
            round_no, iso = text.split()
            delta = datetime.fromisoformat(iso) - controller.now()
            await controller.advance(delta)
            await jobs.run_schedules_once()
            print(f"FIRED {round_no}", flush=True)
        await asyncio.sleep(0.005)


async def main(args: argparse.Namespace) -> None:
    where: dict[str, Any] = (
        {"pg_con": args.dsn} if args.dsn is not None else {"sqlite_path": args.sqlite}
    )
    clock, controller = ClockHandle.manual(datetime.fromisoformat(START))
    jobs = await Jobs.init(JobSvcConfig(**where, exec_migrations=False, clock=clock))
    spawner = jobs.add_initializer(TickInitializer())
    jobs.add_schedule(spawner, "*/5 * * * *", Tick())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    orphan_watch = asyncio.create_task(stop_when_orphaned(stop))
    print("READY", flush=True)
    await follow(jobs, controller, Path(args.clock_file), stop)
    orphan_watch.cancel()
    await jobs.shutdown()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.acceptance.cron_worker")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--dsn")
    target.add_argument("--sqlite")
    parser.add_argument("--clock-file", required=True)
    asyncio.run(main(parser.parse_args()))
