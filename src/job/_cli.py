"""The operator commands of ``job``: ``jobs``, ``queues``, ``cron``, ``workers``, ``stats`` and
``dashboard`` (see :mod:`job.__main__` and docs/operations.md).

Every command reads and writes through :class:`job.admin.Admin` (no SQL here). The database
comes from ``--dsn URL`` or ``--sqlite PATH``, else ``$JOB_DATABASE_URL``, else
``$JOB_SQLITE_PATH``. Output is an aligned table (times in UTC, ISO 8601, to the second), or
JSON with ``--json`` (stable keys, full-precision ISO 8601 times, ``null`` for no value).
Errors go to stderr, with any password of the DSN masked.

Exit status: 0 success; 1 failure (database unreachable, schema behind: run ``job migrate``);
2 usage error (bad flag, id, duration or cursor; no database; a missing extra); 3 no job
with that id; 4 the job's state refuses the action (retry a completed job, delete a live one).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from job._events import RUN_ENDINGS
from job.admin import Admin, JobFilter, JobSummary, QueueInfo, ScheduleInfo, Stats, WorkerInfo
from job.config import JobSvcConfig
from job.entity import CancelResult, Job, JobState
from job.errors import ConfigError, JobError, JobNotFoundError, JobStateError, MigrationError

__all__ = [
    "ADMIN_COMMANDS",
    "ENV_DSN",
    "ENV_SQLITE",
    "EXIT_FAILURE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STATE",
    "EXIT_USAGE",
    "add_admin_commands",
    "parse_duration",
    "run_admin",
]

ENV_DSN = "JOB_DATABASE_URL"
ENV_SQLITE = "JOB_SQLITE_PATH"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_STATE = 4

#: The top-level commands this module adds (``main`` hands them to :func:`run_admin`).
ADMIN_COMMANDS = frozenset({"jobs", "queues", "cron", "workers", "stats", "dashboard"})

EXIT_EPILOG = """\
database:
  --dsn URL or --sqlite PATH, else $JOB_DATABASE_URL, else $JOB_SQLITE_PATH. Prefer the
  variables: a password in the command line is visible to ps.

exit status:
  0    success
  1    failure: the database is unreachable, or its schema is behind (run `job migrate`)
  2    usage error: a bad flag, job id, duration or cursor, no database given, or a
       missing extra (job[dashboard], job[metrics])
  3    no job with that id
  4    the job's state refuses the action (retry a completed job, delete a live one)"""

#: The longest ``--since`` / ``--window`` duration (for longer, give ``--since`` a time).
MAX_DURATION = timedelta(days=36525)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1w``, or a sum such as ``1h30m``; positive."""
    text = text.strip().lower()
    if not _DURATION.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not a duration: {text[:40]!r} (use e.g. 90s, 15m, 2h, 7d, 1h30m)"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive, got {text!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"a duration must be at most 100 years: {text[:40]!r}")
    return timedelta(seconds=seconds)


def _since(text: str) -> datetime | timedelta:
    """``--since``: a duration back from now, or an ISO 8601 time (naive means UTC)."""
    try:
        return parse_duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration or an ISO 8601 time: {text[:40]!r} (e.g. 2h, 2026-06-01T12:00Z)"
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _job_id(text: str) -> UUID:
    try:
        return UUID(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a job id (a UUID): {text[:60]!r}") from None


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text[:20]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _queue_limit(text: str) -> int | None:
    """``queues scale``: a limit >= 1, or ``default`` (back to each worker's own)."""
    if text.strip().lower() in ("default", "none"):
        return None
    return _limit(text)


def _port(text: str) -> int:
    value = _limit(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


# -- the parser -------------------------------------------------------------------------------


def _common(*, json_flag: bool = True) -> argparse.ArgumentParser:
    """The flags of every admin command: the database, and ``--json``."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("database")
    choice = where.add_mutually_exclusive_group()
    choice.add_argument(
        "--dsn",
        metavar="URL",
        help=f"PostgreSQL URL (default: ${ENV_DSN}; prefer the variable, argv shows in ps)",
    )
    choice.add_argument(
        "--sqlite", metavar="PATH", help=f"an SQLite database file (default: ${ENV_SQLITE})"
    )
    if json_flag:
        common.add_argument(
            "--json", action="store_true", help="print JSON instead of a table (stable keys)"
        )
    return common


Handler = Callable[[Admin, argparse.Namespace], Awaitable[int]]


def _leaf(
    group: Any,
    name: str,
    handler: Handler | None,
    help_text: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    leaf: argparse.ArgumentParser = group.add_parser(
        name,
        help=help_text,
        description=help_text[:1].upper() + help_text[1:] + ".",
        parents=[common],
        epilog=EXIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    leaf.set_defaults(handler=handler, parser=leaf)
    return leaf


def add_admin_commands(commands: Any) -> None:
    """Add the admin commands to ``commands`` (the ``add_subparsers()`` of ``job``)."""
    common = _common()

    def group(name: str, help_text: str) -> Any:
        parser = commands.add_parser(
            name,
            help=help_text,
            description=help_text[:1].upper() + help_text[1:] + ".",
            epilog=EXIT_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    jobs = group("jobs", "list, show, retry, cancel and delete jobs")
    listing = _leaf(jobs, "list", _jobs_list, "list jobs, newest first", common)
    listing.add_argument("--state", choices=[s.value for s in JobState], help="in this state")
    listing.add_argument("--type", dest="job_type", metavar="TYPE", help="of this job type")
    listing.add_argument("--queue", metavar="NAME", help="of the job types of this named queue")
    listing.add_argument(
        "--search", metavar="TEXT", help="an id's first characters, or part of a type or key"
    )
    listing.add_argument(
        "--since",
        type=_since,
        metavar="DURATION|TIME",
        help="spawned within DURATION (2h, 7d) or at or after an ISO 8601 TIME (UTC if naive)",
    )
    listing.add_argument(
        "--limit", type=_limit, default=50, metavar="N", help="rows per page (50, at most 500)"
    )
    listing.add_argument(
        "--cursor", metavar="CURSOR", help="the next page: the cursor the previous page printed"
    )
    show = _leaf(jobs, "show", _jobs_show, "show one job: config, state, errors, history", common)
    show.add_argument("id", type=_job_id, metavar="ID")
    retry = _leaf(jobs, "retry", _jobs_retry, "requeue an errored or cancelled job", common)
    retry.add_argument("id", type=_job_id, metavar="ID")
    cancel = _leaf(jobs, "cancel", _jobs_cancel, "cancel a job, pending or running", common)
    cancel.add_argument("id", type=_job_id, metavar="ID")
    cancel.add_argument(
        "--reason", default="cancelled by an operator", help="recorded in the job's history"
    )
    delete = _leaf(jobs, "delete", _jobs_delete, "delete an ended job and its history", common)
    delete.add_argument("id", type=_job_id, metavar="ID")

    queues = group("queues", "list, pause, resume and scale named queues")
    _leaf(queues, "list", _queues_list, "list the named queues", common)
    for name, fn, text in [
        ("pause", _queues_pause, "stop the workers claiming jobs of a queue"),
        ("resume", _queues_resume, "let the workers claim jobs of a queue again"),
    ]:
        _leaf(queues, name, fn, text, common).add_argument(
            "name", metavar="NAME", help="the named queue (JobInitializer.queue())"
        )
    scale = _leaf(queues, "scale", _queues_scale, "set a queue's per-worker limit", common)
    scale.add_argument("name", metavar="NAME", help="the named queue (JobInitializer.queue())")
    scale.add_argument(
        "limit",
        type=_queue_limit,
        metavar="LIMIT|default",
        help="jobs of the queue each worker runs at once; 'default': each worker's own",
    )

    cron = group("cron", "list the cron schedules")
    _leaf(cron, "list", _cron_list, "list the cron schedules and their next fire times", common)

    _leaf(commands, "workers", _workers, "list the polling workers and their heartbeats", common)
    stats = _leaf(commands, "stats", _stats, "counts per state, queue and job type", common)
    stats.add_argument(
        "--window",
        type=parse_duration,
        default=timedelta(hours=24),
        metavar="DURATION",
        help="count ended jobs within this long (default: 24h)",
    )

    dashboard = _leaf(
        commands, "dashboard", None, "serve the web dashboard", _common(json_flag=False)
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    dashboard.add_argument("--port", type=_port, default=8080, help="port to bind (8080)")


# -- running a command ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Database:
    dsn: str | None
    sqlite_path: str | None

    def redact(self, text: str) -> str:
        """``text`` with the DSN's password masked (the text dropped if that fails)."""
        if self.dsn is None:
            return text
        try:
            return JobSvcConfig(pg_con=self.dsn).redact(text)
        except Exception:
            return "(error text withheld: it could not be checked for the password)"


def _database(args: argparse.Namespace) -> _Database | None:
    parser: argparse.ArgumentParser = args.parser
    if args.dsn is not None or args.sqlite is not None:
        if not (args.dsn or args.sqlite):
            parser.error("--dsn / --sqlite must not be empty")
        return _Database(args.dsn or None, args.sqlite or None)
    if os.environ.get(ENV_DSN):
        return _Database(os.environ[ENV_DSN], None)
    if os.environ.get(ENV_SQLITE):
        return _Database(None, os.environ[ENV_SQLITE])
    return None


def _who() -> str:
    """Who the actions are recorded as done by: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _out(line: str = "", *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(line + "\n")


def _name(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return f"job {args.command}" + (f" {action}" if action else "")


def run_admin(args: argparse.Namespace) -> int:
    """Run the admin command ``args`` (parsed by a parser with :func:`add_admin_commands`)."""
    parser: argparse.ArgumentParser = args.parser
    database = _database(args)
    if database is None:
        parser.error(f"no database: pass --dsn or --sqlite, or set ${ENV_DSN} or ${ENV_SQLITE}")
    if args.command == "dashboard":
        return _dashboard(args, database)
    name = _name(args)
    if database.sqlite_path is not None and not os.path.isfile(database.sqlite_path):
        _out(f"{name}: no SQLite database file at {database.sqlite_path}", err=True)
        return EXIT_FAILURE
    try:
        return asyncio.run(_run(args, database))
    except JobNotFoundError as exc:
        _out(f"{name}: {exc}", err=True)
        return EXIT_NOT_FOUND
    except JobStateError as exc:
        _out(f"{name}: {database.redact(str(exc))}", err=True)
        return EXIT_STATE
    except ConfigError as exc:
        _out(f"{name}: {database.redact(str(exc))}", err=True)
        return EXIT_USAGE
    except MigrationError as exc:
        _out(f"{name}: {database.redact(str(exc))}", err=True)
        how = (
            f"job migrate --sqlite {database.sqlite_path}"
            if database.sqlite_path is not None
            else "job migrate"
        )
        _out(f"{name}: the job schema is not at this library's version: run `{how}`", err=True)
        return EXIT_FAILURE
    except (JobError, OSError) as exc:
        _out(f"{name}: {type(exc).__name__}: {database.redact(str(exc))}", err=True)
        return EXIT_FAILURE
    except Exception as exc:  # a driver error the backend did not translate: still redacted
        _out(f"{name}: {type(exc).__name__}: {database.redact(str(exc))}", err=True)
        return EXIT_FAILURE


async def _run(args: argparse.Namespace, database: _Database) -> int:
    handler: Handler = args.handler
    async with Admin.connect(dsn=database.dsn, sqlite_path=database.sqlite_path) as admin:
        return await handler(admin, args)


# -- formatting -------------------------------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    """JSON: full precision, UTC."""
    return None if at is None else at.astimezone(UTC).isoformat()


def _short(at: datetime | None) -> str:
    """Tables: ISO 8601 in UTC, to the second."""
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return _short(value)
    text = str(value)
    return text.replace("\n", " ").replace("\t", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Aligned columns, two spaces apart; the last column is not padded."""
    cells = [list(headers), *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        _out("  ".join([*padded, row[-1]]).rstrip())


def _json(value: object) -> int:
    _out(json.dumps(value, indent=2, sort_keys=False, default=str))
    return EXIT_OK


def _jsonable(value: Any) -> Any:
    """A job's config / result as JSON: stored JSON as it is, a model as its JSON dump."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return value


def _summary_json(j: JobSummary) -> dict[str, Any]:
    return {
        "id": str(j.id),
        "job_type": j.job_type,
        "queue": j.queue,
        "state": j.state.value,
        "attempt": j.attempt,
        "unique_key": j.unique_key,
        "queue_id": j.queue_id,
        "created_at": _iso(j.created_at),
        "execute_at": _iso(j.execute_at),
        "finished_at": _iso(j.finished_at),
    }


def _counts_json(counts: dict[JobState, int]) -> dict[str, int]:
    return {state.value: counts.get(state, 0) for state in JobState}


# -- jobs -------------------------------------------------------------------------------------


async def _jobs_list(admin: Admin, args: argparse.Namespace) -> int:
    since = args.since
    if isinstance(since, timedelta):
        since = admin.jobs.clock.now() - since
    flt = JobFilter(
        state=None if args.state is None else JobState(args.state),
        job_type=args.job_type,
        queue=args.queue,
        created_after=since,
        search=args.search,
    )
    page = await admin.list_jobs(flt, limit=args.limit, cursor=args.cursor)
    if args.json:
        return _json(
            {"jobs": [_summary_json(j) for j in page.jobs], "next_cursor": page.next_cursor}
        )
    if not page.jobs:
        _out("no jobs")
    else:
        _table(
            ["ID", "TYPE", "QUEUE", "STATE", "ATTEMPT", "CREATED", "DUE", "ENDED"],
            [
                [
                    j.id,
                    j.job_type,
                    j.queue,
                    j.state.value,
                    j.attempt,
                    j.created_at,
                    j.execute_at,
                    j.finished_at,
                ]
                for j in page.jobs
            ],
        )
    if page.next_cursor is not None:
        _out(f"next page: --cursor {page.next_cursor}")
    return EXIT_OK


def _last_attempt(job: Job[Any]) -> int | None:
    if job.attempt is not None:
        return job.attempt
    attempts = [e.data["attempt"] for e in job.events if isinstance(e.data.get("attempt"), int)]
    return max(attempts, default=None)


def _runs(job: Job[Any]) -> int:
    return sum(1 for e in job.events if e.type in RUN_ENDINGS)


def _event_details(data: dict[str, Any]) -> str:
    parts = []
    for key, value in data.items():
        plain = isinstance(value, str) and value and not any(c.isspace() for c in value)
        text = value if plain else json.dumps(value, default=str)
        parts.append(f"{key}={text}")
    return " ".join(parts)


async def _jobs_show(admin: Admin, args: argparse.Namespace) -> int:
    job = await admin.get_job(args.id)
    queue = await admin.queue_of(job.job_type)
    if args.json:
        return _json(
            {
                "id": str(job.id),
                "job_type": job.job_type,
                "queue": queue,
                "state": job.state.value,
                "attempt": _last_attempt(job),
                "runs": _runs(job),
                "unique_key": job.unique_key,
                "queue_id": job.queue_id,
                "created_at": _iso(job.created_at),
                "execute_at": _iso(job.execute_at),
                "config": _jsonable(job.config),
                "result": _jsonable(job.result),
                "last_error": job.last_error,
                "execution_state": _jsonable(job.execution_state),
                "events": [
                    {
                        "sequence": e.sequence,
                        "type": e.type,
                        "recorded_at": _iso(e.recorded_at),
                        "data": e.data,
                    }
                    for e in job.events
                ],
            }
        )
    fields: list[tuple[str, object]] = [
        ("id", job.id),
        ("type", job.job_type),
        ("queue", queue),
        ("state", job.state.value),
        ("attempt", _last_attempt(job)),
        ("runs", _runs(job)),
        ("unique key", job.unique_key),
        ("queue id", job.queue_id),
        ("created", job.created_at),
        ("due", job.execute_at),
        ("result", None if job.result is None else json.dumps(_jsonable(job.result))),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        _out(f"{key.ljust(width)}  {_cell(value)}")
    # The error as it was recorded: a traceback keeps its lines.
    error_lines = (job.last_error or "-").splitlines() or ["-"]
    _out(f"{'last error'.ljust(width)}  {error_lines[0]}")
    for line in error_lines[1:]:
        _out(f"{''.ljust(width)}  {line}")
    _out("config")
    for line in json.dumps(_jsonable(job.config), indent=2, default=str).splitlines():
        _out(f"  {line}")
    _out("history")
    _table(
        ["  #", "TIME", "EVENT", "DETAILS"],
        [[f"  {e.sequence}", e.recorded_at, e.type, _event_details(e.data)] for e in job.events],
    )
    return EXIT_OK


async def _jobs_retry(admin: Admin, args: argparse.Namespace) -> int:
    job = await admin.retry(args.id, by=_who())
    if args.json:
        return _json({"id": str(job.id), "action": "retried", "state": job.state.value})
    _out(f"job {job.id} requeued: {job.state.value}, due {_short(job.execute_at)}")
    return EXIT_OK


_CANCEL_TEXT = {
    CancelResult.CANCELLED: "cancelled (it was pending: it will not run)",
    CancelResult.REQUESTED: "cancel requested (it is running: its runner was told)",
    CancelResult.FINISHED: "already finished: nothing changed",
}


async def _jobs_cancel(admin: Admin, args: argparse.Namespace) -> int:
    result = await admin.cancel(args.id, by=_who(), reason=args.reason)
    if args.json:
        return _json({"id": str(args.id), "action": "cancel", "result": result.value})
    _out(f"job {args.id} {_CANCEL_TEXT[result]}")
    return EXIT_OK


async def _jobs_delete(admin: Admin, args: argparse.Namespace) -> int:
    await admin.delete(args.id, by=_who())
    if args.json:
        return _json({"id": str(args.id), "action": "deleted"})
    _out(f"job {args.id} deleted, with its history")
    return EXIT_OK


# -- queues, cron, workers, stats -------------------------------------------------------------


def _queue_json(q: QueueInfo) -> dict[str, Any]:
    return {
        "name": q.name,
        "job_types": q.job_types,
        "paused": q.paused,
        "limit": q.limit,
        "pending": q.pending,
        "running": q.running,
        "lag_seconds": q.lag_seconds,
    }


async def _queues_list(admin: Admin, args: argparse.Namespace) -> int:
    queues = await admin.list_queues()
    if args.json:
        return _json({"queues": [_queue_json(q) for q in queues]})
    if not queues:
        _out("no named queues (no worker registered one, none has settings)")
        return EXIT_OK
    _table(
        ["QUEUE", "PAUSED", "LIMIT", "PENDING", "RUNNING", "LAG", "JOB TYPES"],
        [
            [
                q.name,
                q.paused,
                "default" if q.limit is None else q.limit,
                q.pending,
                q.running,
                f"{q.lag_seconds:.1f}s",
                ",".join(q.job_types) or "-",
            ]
            for q in queues
        ],
    )
    return EXIT_OK


async def _note_unknown_queue(admin: Admin, name: str) -> None:
    """A setting for a queue no worker registered is stored all the same (the worker may not
    be started yet), but it may be a typo: say so on stderr."""
    if name not in {q.name for q in await admin.list_queues()}:
        _out(
            f"note: no worker registered a queue named {name!r}: the setting applies to the"
            " workers that register it",
            err=True,
        )


async def _queues_pause(admin: Admin, args: argparse.Namespace) -> int:
    await _note_unknown_queue(admin, args.name)
    await admin.pause_queue(args.name, by=_who())
    if args.json:
        return _json({"queue": args.name, "action": "paused"})
    _out(f"queue {args.name} paused: workers stop claiming its jobs (running ones finish)")
    return EXIT_OK


async def _queues_resume(admin: Admin, args: argparse.Namespace) -> int:
    await _note_unknown_queue(admin, args.name)
    await admin.resume_queue(args.name, by=_who())
    if args.json:
        return _json({"queue": args.name, "action": "resumed"})
    _out(f"queue {args.name} resumed")
    return EXIT_OK


async def _queues_scale(admin: Admin, args: argparse.Namespace) -> int:
    limit: int | None = args.limit
    await _note_unknown_queue(admin, args.name)
    await admin.scale_queue(args.name, limit, by=_who())
    if args.json:
        return _json({"queue": args.name, "action": "scaled", "limit": limit})
    shown = "each worker's own (default)" if limit is None else f"{limit} per worker"
    _out(f"queue {args.name} limit set to {shown}")
    return EXIT_OK


def _schedule_json(s: ScheduleInfo) -> dict[str, Any]:
    return {"name": s.name, "spec": s.spec, "next_fire_at": _iso(s.next_fire_at)}


async def _cron_list(admin: Admin, args: argparse.Namespace) -> int:
    schedules = await admin.list_schedules()
    if args.json:
        return _json({"schedules": [_schedule_json(s) for s in schedules]})
    if not schedules:
        _out("no cron schedules (a leader seeds them when it starts polling)")
        return EXIT_OK
    _table(
        ["NAME", "NEXT FIRE", "SCHEDULE"],
        [[s.name, s.next_fire_at, s.spec] for s in schedules],
    )
    return EXIT_OK


def _worker_json(w: WorkerInfo) -> dict[str, Any]:
    return {
        "instance_id": str(w.instance_id),
        "host": w.host,
        "pid": w.pid,
        "job_types": w.job_types,
        "queues": w.queues,
        "started_at": _iso(w.started_at),
        "last_heartbeat": _iso(w.last_heartbeat),
        "running": w.running,
        "stale": w.stale,
    }


async def _workers(admin: Admin, args: argparse.Namespace) -> int:
    workers = await admin.list_workers()
    if args.json:
        return _json({"workers": [_worker_json(w) for w in workers]})
    if not workers:
        _out("no workers")
        return EXIT_OK
    _table(
        ["INSTANCE", "HOST", "PID", "STARTED", "HEARTBEAT", "RUNNING", "STALE", "JOB TYPES"],
        [
            [
                w.instance_id,
                w.host,
                w.pid,
                w.started_at,
                w.last_heartbeat,
                w.running,
                w.stale,
                ",".join(w.job_types) or "-",
            ]
            for w in workers
        ],
    )
    return EXIT_OK


def _stats_json(stats: Stats) -> dict[str, Any]:
    return {
        "window_seconds": stats.window.total_seconds(),
        "by_state": _counts_json(stats.by_state),
        "by_queue": {q: _counts_json(c) for q, c in sorted(stats.by_queue.items())},
        "by_type": {t: _counts_json(c) for t, c in sorted(stats.by_type.items())},
        "failure_rate": stats.failure_rate,
        "throughput": [
            {
                "start": _iso(b.start),
                "completed": b.completed,
                "errored": b.errored,
                "cancelled": b.cancelled,
            }
            for b in stats.throughput
        ],
    }


def _window_text(window: timedelta) -> str:
    seconds = window.total_seconds()
    # 24h stays 24h (the default); 2d and more in days.
    for unit, size, least in (("d", 86400, 2 * 86400), ("h", 3600, 3600), ("m", 60, 60)):
        if seconds >= least and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


async def _stats(admin: Admin, args: argparse.Namespace) -> int:
    stats = await admin.stats(window=args.window)
    if args.json:
        return _json(_stats_json(stats))
    states = list(JobState)
    _out(
        f"live jobs, and jobs ended within {_window_text(stats.window)}"
        f" (failure rate {stats.failure_rate:.1%})"
    )
    headers = ["", *[s.value.upper() for s in states]]
    _table(headers, [["all", *[stats.by_state[s] for s in states]]])
    for title, groups in (("QUEUE", stats.by_queue), ("TYPE", stats.by_type)):
        if groups:
            _out()
            _table(
                [title, *headers[1:]],
                [[name, *[c[s] for s in states]] for name, c in sorted(groups.items())],
            )
    return EXIT_OK


# -- dashboard --------------------------------------------------------------------------------


def _dashboard(args: argparse.Namespace, database: _Database) -> int:
    try:
        serve = cast(Callable[..., int], importlib.import_module("job.dashboard").serve)
        return serve(
            dsn=database.dsn, sqlite_path=database.sqlite_path, host=args.host, port=args.port
        )
    except ImportError as exc:
        _out(f"job dashboard: the dashboard is not installed ({exc})", err=True)
        _out("job dashboard: pip install 'job[dashboard]'", err=True)
        return EXIT_USAGE
    except ConfigError as exc:
        _out(f"job dashboard: {database.redact(str(exc))}", err=True)
        return EXIT_USAGE
    except (JobError, OSError) as exc:
        _out(f"job dashboard: {type(exc).__name__}: {database.redact(str(exc))}", err=True)
        return EXIT_FAILURE
