"""One benchmark process for one library: install, spawn, prefill, or run a worker.

Started by ``bench/run.py``; never imported by it, so every measurement runs in a fresh
interpreter with only one library loaded. oban's agents run this same file under Python 3.12
(bench/.venv312): nothing but the standard library is imported at module level. It talks to
the orchestrator over stdin/stdout with one line per message:

* it prints ``READY <rss_kb>`` once set up, then waits for ``GO`` (workers, spawners) so that
  import and connection time is never measured;
* workers print ``S <n> <time.time()>`` when a job's code starts (latency mode only);
* the orchestrator sends ``STOP``; a worker prints ``DONE <json>`` with its peak RSS, then
  shuts down gracefully (the orchestrator may kill it meanwhile: its database is thrown away);
* ``spawn`` prints ``DONE <json>`` with its timing; ``producer`` answers ``SPAWN <n>`` with
  ``C <n> <time.time()>`` taken right after the spawn call returned (the commit).

Usage: ``agent.py <library> <command> <dsn> [json options]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

JOB_TYPE = "bench_noop"  # job type / pgqueuer entrypoint / procrastinate task name
QUEUE = "bench"  # procrastinate and oban queue

LATENCY = False  # set by the worker command: runners then report their start time


def report_start(n: int) -> None:
    sys.stdout.write(f"S {n} {time.time():.6f}\n")
    sys.stdout.flush()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def rss_kb() -> int:
    """Current resident set size in KiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() // 1024


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


async def read_line() -> str:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:  # orchestrator went away
        return "STOP"
    return line.strip()


async def wait_for(word: str) -> None:
    while (line := await read_line()) != word:
        if line == "STOP":
            raise SystemExit(0)


# -- job ---------------------------------------------------------------------------------------


class JobLib:
    """The library under test."""

    def __init__(self) -> None:
        from pydantic import BaseModel

        from job import Complete, JobInitializer, JobRunner

        class Noop(BaseModel):
            n: int = 0

        class NoopRunner(JobRunner[Noop]):
            async def run(self, current_job: Any) -> Any:
                if LATENCY:
                    report_start(current_job.config.n)
                return Complete()

        class NoopInitializer(JobInitializer[Noop]):
            job_type = JOB_TYPE

            def init(self, config: Noop) -> NoopRunner:
                return NoopRunner()

        self.noop_type = Noop
        self.initializer = NoopInitializer
        self.jobs: Any = None
        self.spawner: Any = None

    async def open(self, dsn: str, opts: dict[str, Any]) -> None:
        from job import JobPollerConfig, Jobs, JobSvcConfig

        poller = JobPollerConfig(
            max_jobs_per_process=opts.get("max_jobs", 50),
            min_jobs_per_process=opts.get("min_jobs", 30),
        )
        config = JobSvcConfig(
            pg_con=dsn, max_connections=opts.get("pool", 10), poller_config=poller
        )
        self.jobs = await Jobs.init(config)
        self.spawner = self.jobs.add_initializer(self.initializer())

    async def close(self) -> None:
        await self.jobs.shutdown()

    async def install(self, dsn: str) -> None:
        await self.open(dsn, {})  # migrates
        await self.close()

    async def spawn_one(self, n: int) -> None:
        await self.spawner.spawn(self.noop_type(n=n))

    async def spawn_many(self, first: int, count: int) -> None:
        await self.spawner.spawn_many([self.noop_type(n=n) for n in range(first, first + count)])

    async def work(self, stop: Callable[[], Awaitable[None]]) -> None:
        await self.jobs.start_poll()
        await stop()


# -- pgqueuer ----------------------------------------------------------------------------------


class PgqLib:
    """pgqueuer with its psycopg driver (PsycopgDriver: one AsyncConnection per manager)."""

    def __init__(self) -> None:
        self.conns: list[Any] = []
        self.queries: Any = None
        self.managers: list[Any] = []
        self.opts: dict[str, Any] = {}

    async def _connect(self, dsn: str) -> Any:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        self.conns.append(conn)
        return conn

    async def open(self, dsn: str, opts: dict[str, Any]) -> None:
        from pgqueuer.db import PsycopgDriver
        from pgqueuer.models import Job
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries

        self.opts = opts
        self.queries = Queries(PsycopgDriver(await self._connect(dsn)))
        for _ in range(opts.get("managers", 0)):
            qm = QueueManager(Queries(PsycopgDriver(await self._connect(dsn))))

            async def noop(job: Job) -> None:
                if LATENCY:
                    report_start(int(job.payload or b"0"))

            qm.entrypoint(JOB_TYPE)(noop)
            self.managers.append(qm)

    async def close(self) -> None:
        for conn in self.conns:
            await conn.close()

    async def install(self, dsn: str) -> None:
        await self.open(dsn, {})
        await self.queries.install()
        await self.queries.optimize_autovacuum()  # `pgq autovac`, the documented tuning
        await self.close()

    async def spawn_one(self, n: int) -> None:
        await self.queries.enqueue(JOB_TYPE, str(n).encode(), 0)

    async def spawn_many(self, first: int, count: int) -> None:
        ns = range(first, first + count)
        await self.queries.enqueue([JOB_TYPE] * count, [str(n).encode() for n in ns], [0] * count)

    async def work(self, stop: Callable[[], Awaitable[None]]) -> None:
        batch = self.opts.get("batch_size", 10)
        runs = [
            asyncio.create_task(qm.run(batch_size=batch, dequeue_timeout=timedelta(seconds=30)))
            for qm in self.managers
        ]
        await stop()
        for qm in self.managers:
            qm.shutdown.set()
        await asyncio.wait_for(asyncio.gather(*runs), timeout=30)


class PgqAsyncpgLib(PgqLib):
    """pgqueuer with its asyncpg driver (AsyncpgDriver: one asyncpg connection per manager)."""

    async def _connect(self, dsn: str) -> Any:
        import asyncpg
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)  # the orchestrator passes a libpq key=value string
        conn = await asyncpg.connect(
            host=params.get("host"),
            port=int(params.get("port", 5432)),
            user=params.get("user"),
            password=params.get("password"),
            database=params.get("dbname"),
        )
        self.conns.append(conn)
        return conn

    async def open(self, dsn: str, opts: dict[str, Any]) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.models import Job
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries

        self.opts = opts
        self.queries = Queries(AsyncpgDriver(await self._connect(dsn)))
        for _ in range(opts.get("managers", 0)):
            qm = QueueManager(Queries(AsyncpgDriver(await self._connect(dsn))))

            async def noop(job: Job) -> None:
                if LATENCY:
                    report_start(int(job.payload or b"0"))

            qm.entrypoint(JOB_TYPE)(noop)
            self.managers.append(qm)


# -- oban --------------------------------------------------------------------------------------


class ObanLib:
    """oban (the Python port of Elixir's Oban) on its psycopg AsyncConnectionPool; Python 3.12.

    Its ``enqueue_many`` runs one INSERT statement per job (in one transaction): there is no
    multi-row insert. Workers are found through oban's registry by class path, here
    ``__main__.ObanLib.__init__.<locals>.Noop`` in every agent alike."""

    def __init__(self) -> None:
        from oban import worker

        @worker(queue=QUEUE)
        class Noop:
            async def process(self, job: Any) -> None:
                if LATENCY:
                    report_start(int(job.args.get("n", 0)))

        self.worker = Noop
        self.pool: Any = None
        self.oban: Any = None

    async def open(self, dsn: str, opts: dict[str, Any]) -> None:
        from oban import Oban
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(
            conninfo=dsn, min_size=1, max_size=opts.get("pool", 10), open=False
        )
        await self.pool.open()
        limit = opts.get("limit")
        # A worker starts with its queue paused (a documented queue option) so that its
        # start-up (producer row, leadership, LISTEN) happens before READY; GO resumes it.
        queues = {QUEUE: {"limit": limit, "paused": True}} if limit else None
        self.oban = Oban(pool=self.pool, queues=queues)
        await self.oban.start()  # without queues: client mode (enqueueing only)

    async def close(self) -> None:
        await self.oban.stop()
        await self.pool.close()

    async def install(self, dsn: str) -> None:
        from oban.schema import install
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(conninfo=dsn, min_size=1, max_size=1, open=False) as pool:
            await install(pool)  # what `oban install` runs

    async def spawn_one(self, n: int) -> None:
        await self.oban.enqueue(self.worker.new({"n": n}))

    async def spawn_many(self, first: int, count: int) -> None:
        jobs = [self.worker.new({"n": n}) for n in range(first, first + count)]
        await self.oban.enqueue_many(jobs)

    async def work(self, stop: Callable[[], Awaitable[None]]) -> None:
        await self.oban.resume_queue(QUEUE, node=self.oban._node)  # this node only
        await stop()


# -- procrastinate -----------------------------------------------------------------------------


class ProcLib:
    """procrastinate with its PsycopgConnector (a psycopg_pool.AsyncConnectionPool)."""

    def __init__(self) -> None:
        self.app: Any = None
        self.task: Any = None
        self.opts: dict[str, Any] = {}

    async def open(self, dsn: str, opts: dict[str, Any]) -> None:
        import procrastinate

        self.opts = opts
        connector = procrastinate.PsycopgConnector(
            conninfo=dsn, min_size=1, max_size=opts.get("pool", 10)
        )
        self.app = procrastinate.App(connector=connector)

        async def noop(n: int = 0) -> None:
            if LATENCY:
                report_start(n)

        self.task = self.app.task(name=JOB_TYPE, queue=QUEUE)(noop)
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()

    async def install(self, dsn: str) -> None:
        await self.open(dsn, {})
        await self.app.schema_manager.apply_schema_async()
        await self.close()

    async def spawn_one(self, n: int) -> None:
        await self.task.defer_async(n=n)

    async def spawn_many(self, first: int, count: int) -> None:
        await self.task.batch_defer_async(*({"n": n} for n in range(first, first + count)))

    async def work(self, stop: Callable[[], Awaitable[None]]) -> None:
        worker = asyncio.create_task(
            self.app.run_worker_async(
                queues=[QUEUE],
                concurrency=self.opts.get("concurrency", 1),
                install_signal_handlers=False,
                delete_jobs=self.opts.get("delete_jobs", "never"),
            )
        )
        await stop()
        worker.cancel()  # procrastinate turns this into a graceful stop
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(worker, timeout=30)


LIBS: dict[str, Callable[[], Any]] = {
    "job": JobLib,
    "pgqueuer": PgqLib,
    "pgqueuer-asyncpg": PgqAsyncpgLib,
    "oban": ObanLib,
    "procrastinate": ProcLib,
}


# -- commands ----------------------------------------------------------------------------------


async def cmd_install(lib: Any, dsn: str, opts: dict[str, Any]) -> None:
    await lib.install(dsn)
    say("DONE {}")


async def cmd_prefill(lib: Any, dsn: str, opts: dict[str, Any]) -> None:
    """Queue ``count`` jobs through the library's own bulk API, in chunks."""
    count, chunk = opts["count"], opts.get("chunk", 5000)
    await lib.open(dsn, {})
    t0 = time.perf_counter()
    for first in range(0, count, chunk):
        await lib.spawn_many(first, min(chunk, count - first))
    elapsed = time.perf_counter() - t0
    await lib.close()
    say("DONE " + json.dumps({"elapsed": elapsed}))


async def cmd_spawn(lib: Any, dsn: str, opts: dict[str, Any]) -> None:
    """Time ``count`` spawns: one awaited call each, or bulk calls of ``batch`` jobs."""
    count, mode = opts["count"], opts["mode"]
    batch = opts.get("batch", 1000)
    await lib.open(dsn, {})
    say(f"READY {rss_kb()}")
    await wait_for("GO")
    t0 = time.perf_counter()
    if mode == "single":
        for n in range(count):
            await lib.spawn_one(n)
    else:
        for first in range(0, count, batch):
            await lib.spawn_many(first, min(batch, count - first))
    elapsed = time.perf_counter() - t0
    await lib.close()
    say("DONE " + json.dumps({"elapsed": elapsed, "count": count}))


async def cmd_producer(lib: Any, dsn: str, opts: dict[str, Any]) -> None:
    """Spawn one job per ``SPAWN <n>`` line; answer with the time the call returned."""
    await lib.open(dsn, {})
    say(f"READY {rss_kb()}")
    while (line := await read_line()) != "STOP":
        n = int(line.split()[1])
        await lib.spawn_one(n)
        say(f"C {n} {time.time():.6f}")
    await lib.close()
    say("DONE {}")


async def cmd_worker(lib: Any, dsn: str, opts: dict[str, Any]) -> None:
    global LATENCY
    LATENCY = bool(opts.get("latency"))
    await lib.open(dsn, opts)
    ready_rss = rss_kb()
    say(f"READY {ready_rss}")
    await wait_for("GO")

    async def until_stop() -> None:
        await wait_for("STOP")
        # Report before shutting down: the orchestrator need not wait for the shutdown.
        say("DONE " + json.dumps({"ready_rss_kb": ready_rss, "peak_rss_kb": peak_rss_kb()}))

    await lib.work(until_stop)
    await lib.close()


COMMANDS = {
    "install": cmd_install,
    "prefill": cmd_prefill,
    "spawn": cmd_spawn,
    "producer": cmd_producer,
    "worker": cmd_worker,
}


def main() -> None:
    name, command, dsn = sys.argv[1:4]
    opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    lib = LIBS[name]()
    asyncio.run(COMMANDS[command](lib, dsn, opts))


if __name__ == "__main__":
    main()
