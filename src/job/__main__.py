"""The ``job`` command line (``python -m job ...`` or the ``job`` console script).

* ``job demo [--dsn URL | --postgres | --sqlite PATH] [--jobs N]`` runs the demo worker (see
  :mod:`job._demo`): real jobs on a temporary SQLite file (no server), or on PostgreSQL at
  ``URL`` / ``$JOB_DATABASE_URL``, or on a throwaway local PostgreSQL server.
* ``job migrate [--dsn URL | --sqlite PATH]`` applies the library's pending schema migrations
  to ``URL`` (or ``$JOB_DATABASE_URL``) or an SQLite file and prints the versions it applied.
* ``job worker MODULE:ATTR [--dsn URL] [--log-level LEVEL] [--metrics-port PORT
  [--metrics-host HOST]]`` runs an application's ``Jobs`` until SIGTERM/SIGINT, then shuts it
  down gracefully (see :mod:`job.worker`); ``--metrics-port`` serves Prometheus metrics.

The operator commands (see :mod:`job._cli` and docs/operations.md), each with
``--dsn URL | --sqlite PATH`` (default ``$JOB_DATABASE_URL``, else ``$JOB_SQLITE_PATH``) and
``--json``:

* ``job jobs list [--state S] [--type T] [--queue Q] [--search TEXT] [--since DURATION|TIME]
  [--limit N] [--cursor C]``, ``job jobs show ID``, ``job jobs retry ID``,
  ``job jobs cancel ID [--reason R]``, ``job jobs delete ID``;
* ``job queues list``, ``job queues pause NAME``, ``job queues resume NAME``,
  ``job queues scale NAME LIMIT|default``;
* ``job cron list``, ``job workers``, ``job stats [--window DURATION]``;
* ``job dashboard [--host H] [--port P]`` serves the web dashboard (``job[dashboard]``).

Exit status: 0 on success; 1 on failure (the database is unreachable, the schema is behind:
run ``job migrate``); 2 on a usage error (a bad flag, job id, duration or cursor), a bad
worker target, a missing extra, or when there is no database; 3 when no job has the id given;
4 when the job's state refuses the action (retry a completed job, delete a live one); a
worker stopped by a second signal exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from job import _cli, _demo
from job.config import JobSvcConfig
from job.errors import JobError, MigrationError
from job.migrate import applied_versions, latest_version, run_migrations
from job.service import Jobs
from job.worker import WorkerTargetError, import_target, jobs_from_target, run_worker

__all__ = ["build_parser", "main"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="job",
        description=(
            "Background jobs on PostgreSQL or SQLite: the demo, migrations, workers, and the"
            " operator commands (jobs, queues, cron, workers, stats, dashboard)."
        ),
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the demo worker and show what it does")
    where = demo.add_mutually_exclusive_group()
    where.add_argument(
        "--dsn",
        help=f"run on PostgreSQL at this URL (default: ${_demo.ENV_DSN} if set, else SQLite)",
    )
    where.add_argument(
        "--postgres",
        action="store_true",
        help="run on a throwaway local PostgreSQL server (needs its binaries)",
    )
    where.add_argument(
        "--sqlite", metavar="PATH", help="run on this SQLite file (default: a temporary one)"
    )
    demo.add_argument(
        "--jobs", type=_positive, default=200, metavar="N", help="size of the batch (200)"
    )
    migrate = commands.add_parser("migrate", help="apply the job schema migrations")
    target = migrate.add_mutually_exclusive_group()
    target.add_argument("--dsn", help=f"PostgreSQL URL (default: ${_demo.ENV_DSN})")
    target.add_argument("--sqlite", metavar="PATH", help="an SQLite database file instead")
    worker = commands.add_parser(
        "worker",
        help="run an application's jobs until SIGTERM/SIGINT, then shut down gracefully",
        description=WORKER_DESCRIPTION,
        epilog=WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="where the Jobs is: a Jobs instance, or a zero-argument function returning one",
    )
    worker.add_argument(
        "--dsn",
        metavar="URL",
        help=(
            f"set ${_demo.ENV_DSN} to URL before the target is imported (the target reads it;"
            " prefer the variable itself: a password in argv is visible to ps)"
        ),
    )
    worker.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        metavar="LEVEL",
        help="logging level of the log on stderr: DEBUG, INFO, WARNING, ERROR (default: INFO)",
    )
    worker.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs job[metrics])",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics server (default: 127.0.0.1)",
    )
    _cli.add_admin_commands(commands)
    return parser


MAIN_EPILOG = (
    _cli.EXIT_EPILOG
    + """
  128+N  a worker stopped by a second signal N during its shutdown (130, 143)

run `job COMMAND --help` for a command's flags."""
)

WORKER_DESCRIPTION = f"""\
Run the Jobs service at MODULE:ATTR as a worker: import MODULE (from the current directory or
sys.path), take ATTR (dotted names allowed), open the service unless it is open, start
polling, print "job worker started: ..." on stdout, and run until SIGTERM or SIGINT.

ATTR is either
  * a Jobs instance that is not polling yet, e.g. jobs = Jobs(JobSvcConfig(pg_con=...)) with
    its initializers registered by jobs.add_initializer(...); or
  * a function taking no arguments, sync or async, that returns such a Jobs.
The target builds its own JobSvcConfig; read the database URL from ${_demo.ENV_DSN}.

On the first SIGTERM or SIGINT the worker shuts down gracefully: it stops claiming jobs, lets
running jobs finish within shutdown_timeout, hands the rest back to pending (an
execution_aborted event, attempt unchanged), prints "job worker stopped ..." and exits 0.
A second SIGTERM or SIGINT during the shutdown exits at once (see the exit statuses): the
jobs still running then stay 'running' until lost-job recovery runs them again, after
job_lost_interval. Logs go to stderr."""

WORKER_EPILOG = """\
exit status:
  0    stopped by SIGTERM/SIGINT after a graceful shutdown
  1    the service failed (cannot connect, schema behind, the target's function raised),
       or the --metrics-port is in use
  2    usage error, the target cannot be imported or is not a Jobs source, or
       --metrics-port without job[metrics] installed
  130  a second SIGINT during the shutdown (128 + 2)
  143  a second SIGTERM during the shutdown (128 + 15)"""


async def _migrate(dsn: str) -> tuple[list[int], list[int]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        applied = await run_migrations(conn)
        return applied, await applied_versions(conn)


def _out(line: str, *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(line + "\n")


def migrate_command(dsn: str) -> int:
    import psycopg

    try:
        applied, versions = asyncio.run(_migrate(dsn))
    except (psycopg.Error, MigrationError) as exc:
        _out(f"job migrate: {JobSvcConfig(pg_con=dsn).redact(str(exc))}", err=True)
        return 1
    if applied:
        _out("applied migrations: " + ", ".join(str(v) for v in applied))
    else:
        _out("no pending migrations")
    _out(f"schema at version {max(versions, default=0)} (this library expects {latest_version()})")
    return 0


def migrate_sqlite_command(path: str) -> int:
    from job.backends.sqlite import migrate as sqlite_migrate

    try:
        applied = sqlite_migrate.run_migrations(path)
    except (MigrationError, OSError) as exc:
        _out(f"job migrate: {exc}", err=True)
        return 1
    _out(
        "applied migrations: " + ", ".join(map(str, applied))
        if applied
        else "no pending migrations"
    )
    _out(f"schema at version {sqlite_migrate.latest_version()} ({path})")
    return 0


async def _run_worker(target: object, spec: str) -> int:
    jobs = await jobs_from_target(target, spec)

    def started(jobs: Jobs) -> None:
        types = ",".join(jobs.job_types)
        _out(f"job worker started: instance={jobs.instance_id} pid={os.getpid()} types={types}")
        sys.stdout.flush()

    sig = await run_worker(jobs, on_started=started)
    _out(f"job worker stopped after {sig.name}")
    return 0


def start_metrics(port: int, host: str) -> int | None:
    """Start the Prometheus metrics server (``--metrics-port``); an exit status if it cannot."""
    try:
        # Imported when asked for: serving needs the optional `metrics` extra.
        from job.metrics import start_prometheus_server

        start_prometheus_server(port, host)
    except ImportError as exc:
        _out(f"job worker: --metrics-port needs the metrics extra ({exc})", err=True)
        _out("job worker: pip install 'job[metrics]'", err=True)
        return 2
    except OSError as exc:
        _out(f"job worker: cannot serve metrics on {host}:{port}: {exc}", err=True)
        return 1
    return None


def worker_command(
    spec: str,
    dsn: str | None,
    log_level: str,
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """``job worker``: import ``spec`` and run it until a signal; the exit status."""
    if dsn:
        os.environ[_demo.ENV_DSN] = dsn
    logging.basicConfig(
        level=log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if metrics_port is not None:
        failed = start_metrics(metrics_port, metrics_host)
        if failed is not None:
            return failed
    # Like `python -m`, so that `job worker my_app.jobs:jobs` finds my_app in the current dir.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = import_target(spec)
        return asyncio.run(_run_worker(target, spec))
    except WorkerTargetError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        _out(f"job worker: {exc}", err=True)
        return 2
    except JobError as exc:
        _out(f"job worker: {type(exc).__name__}: {exc}", err=True)
        return 1
    except Exception as exc:
        traceback.print_exception(exc, file=sys.stderr)
        _out(f"job worker: {type(exc).__name__}: {exc}", err=True)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: parse ``argv`` (default ``sys.argv[1:]``) and run the command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    dsn: str | None = args.dsn
    try:
        if args.command in _cli.ADMIN_COMMANDS:
            return _cli.run_admin(args)
        if args.command == "demo":
            return _demo.main(dsn, args.jobs, postgres=args.postgres, sqlite_path=args.sqlite)
        if args.command == "worker":
            return worker_command(
                args.target,
                dsn,
                args.log_level,
                metrics_port=args.metrics_port,
                metrics_host=args.metrics_host,
            )
        if args.sqlite is not None:
            return migrate_sqlite_command(args.sqlite)
        dsn = dsn or os.environ.get(_demo.ENV_DSN)
        if not dsn:
            parser.error(f"migrate needs --dsn, --sqlite or ${_demo.ENV_DSN}")
        return migrate_command(dsn)
    except KeyboardInterrupt:
        _out("interrupted", err=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
