"""The ``job`` command line (``python -m job ...`` or the ``job`` console script).

* ``job demo [--dsn URL] [--jobs N]`` runs the demo worker (see :mod:`job._demo`): real jobs
  against ``URL``, ``$JOB_DATABASE_URL``, or a throwaway local PostgreSQL server.
* ``job migrate [--dsn URL]`` applies the library's pending schema migrations to ``URL`` (or
  ``$JOB_DATABASE_URL``) and prints the versions it applied.

Exit status: 0 on success, 1 on failure, 2 on a usage error or when there is no database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import psycopg

from job import _demo
from job.errors import MigrationError
from job.migrate import applied_versions, latest_version, run_migrations

__all__ = ["build_parser", "main"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="job", description="Postgres-backed background jobs: demo worker and migrations."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the demo worker and show what it does")
    demo.add_argument(
        "--dsn", help=f"PostgreSQL URL (default: ${_demo.ENV_DSN}, else a local server)"
    )
    demo.add_argument(
        "--jobs", type=_positive, default=200, metavar="N", help="size of the batch (200)"
    )
    migrate = commands.add_parser("migrate", help="apply the job schema migrations")
    migrate.add_argument("--dsn", help=f"PostgreSQL URL (default: ${_demo.ENV_DSN})")
    return parser


async def _migrate(dsn: str) -> tuple[list[int], list[int]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        applied = await run_migrations(conn)
        return applied, await applied_versions(conn)


def _out(line: str, *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(line + "\n")


def migrate_command(dsn: str) -> int:
    try:
        applied, versions = asyncio.run(_migrate(dsn))
    except (psycopg.Error, MigrationError) as exc:
        _out(f"job migrate: {exc}", err=True)
        return 1
    if applied:
        _out("applied migrations: " + ", ".join(str(v) for v in applied))
    else:
        _out("no pending migrations")
    _out(f"schema at version {max(versions, default=0)} (this library expects {latest_version()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: parse ``argv`` (default ``sys.argv[1:]``) and run the command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    dsn: str | None = args.dsn
    try:
        if args.command == "demo":
            return _demo.main(dsn, args.jobs)
        dsn = dsn or os.environ.get(_demo.ENV_DSN)
        if not dsn:
            parser.error(f"migrate needs --dsn or ${_demo.ENV_DSN}")
        return migrate_command(dsn)
    except KeyboardInterrupt:
        _out("interrupted", err=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
