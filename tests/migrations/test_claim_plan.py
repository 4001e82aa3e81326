"""The hot scheduler queries stay on the claim index with a real backlog.

A backlog of 20,000 pending jobs of each of two types (plus some running ones) is inserted,
the tables are analyzed, and the plans of ``claim_jobs`` and ``next_due_at`` are checked: no
sequential scan of ``job_executions`` (nor of ``jobs``, which keeps every job ever spawned);
the partial claim index does the work. Three plans are checked: the custom plan for literal
values, the plan a server-side prepared statement settles on after ten executions (psycopg
prepares a query once it has run it ``prepare_threshold`` = 5 times, and the poller runs these
constantly), and the forced generic plan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, LiteralString, cast
from uuid import uuid4

import psycopg
import pytest

from job.backends.postgres._queries import CLAIM_JOBS, NEXT_DUE_AT
from tests.fixtures.db import PgServer, create_database, drop_database

BACKLOG_PER_TYPE = 20_000
JOB_TYPES = ["plan_email", "plan_report"]

SEED: LiteralString = """
INSERT INTO jobs (id, job_type, config, execute_at, created_at)
SELECT gen_random_uuid(),
       CASE WHEN mod(g, 2) = 0 THEN 'plan_email' ELSE 'plan_report' END,
       jsonb_build_object('n', g),
       -- half of the backlog due already, half due over the next hour
       now() - interval '1 hour' + random() * interval '2 hours',
       now()
FROM generate_series(1, 2 * %(per_type)s::int) AS g;

INSERT INTO job_executions (id, job_type, execute_at, scheduled_at, event_seq)
SELECT id, job_type, execute_at, now(), 2
FROM jobs;
"""

SEED_RUNNING: LiteralString = """
UPDATE job_executions
SET state = 'running', poller_instance_id = gen_random_uuid(),
    claim_token = gen_random_uuid(), alive_at = clock_timestamp()
WHERE id IN (SELECT id FROM job_executions ORDER BY id LIMIT 500)
"""

QUERIES = {"claim_jobs": CLAIM_JOBS, "next_due_at": NEXT_DUE_AT}


@pytest.fixture(scope="module")
def backlog(pg_server: PgServer) -> Iterator[str]:
    """One migrated database with the backlog, shared by this module's read-only tests."""
    name = create_database(pg_server)
    dsn = pg_server.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in SEED.split(";\n\n"):
            conn.execute(statement, {"per_type": BACKLOG_PER_TYPE})
        conn.execute(SEED_RUNNING)
        conn.execute("ANALYZE jobs")
        conn.execute("ANALYZE job_executions")
        row = conn.execute(
            "SELECT count(*) FROM job_executions WHERE state = 'pending'"
        ).fetchone()
        assert row is not None and row[0] == 2 * BACKLOG_PER_TYPE - 500
    try:
        yield dsn
    finally:
        drop_database(pg_server, name)


def params() -> dict[str, Any]:
    return {
        "job_types": JOB_TYPES,
        "now": datetime.now(UTC),
        "limit": 50,
        "limits": [50] * len(JOB_TYPES),
        "instance_id": uuid4(),
    }


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def custom_plan(conn: psycopg.Connection[Any], query: LiteralString) -> dict[str, Any]:
    """The plan for this query with its parameters inlined as literals."""
    with psycopg.ClientCursor(conn) as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + query, params())
        row = cur.fetchone()
    assert row is not None
    return cast(dict[str, Any], row[0][0]["Plan"])


def server_plan(
    conn: psycopg.Connection[Any], query: LiteralString, *, generic: bool
) -> dict[str, Any]:
    """The plan of the query prepared server-side, as the plan cache picks it.

    ``generic=False``: plan_cache_mode auto, after ten executions -- Postgres plans the first
    five with the actual values, then keeps custom plans unless the generic one looks as cheap.
    ``generic=True``: the parameter-independent plan, forced.
    """
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    # Every parameter in queries.sql carries an explicit cast, so PREPARE infers the types.
    # Built from queries.sql and placeholders only (mypy treats LiteralString as str).
    prepared: LiteralString = re.sub(r"%\((\w+)\)s", positional, query)
    args: LiteralString = ", ".join(["%s"] * len(names))
    mode: LiteralString = "force_generic_plan" if generic else "auto"
    conn.execute("SET plan_cache_mode = " + mode)
    conn.execute("PREPARE hot_query AS " + prepared)
    try:
        with psycopg.ClientCursor(conn) as cur:
            for _ in range(1 if generic else 10):
                values = params()
                cur.execute(
                    "EXPLAIN (FORMAT JSON) EXECUTE hot_query(" + args + ")",
                    [values[name] for name in names],
                )
                row = cur.fetchone()
    finally:
        conn.execute("DEALLOCATE hot_query")
        conn.execute("RESET plan_cache_mode")
    assert row is not None
    return cast(dict[str, Any], row[0][0]["Plan"])


def describe(plan: dict[str, Any]) -> str:
    return "\n".join(
        f"{node['Node Type']} {node.get('Relation Name', '')} {node.get('Index Name', '')}"
        for node in plan_nodes(plan)
    )


@pytest.mark.parametrize("plan_kind", ["custom", "prepared", "generic"])
@pytest.mark.parametrize("query_name", sorted(QUERIES))
def test_hot_query_uses_the_claim_index(backlog, query_name, plan_kind):
    with psycopg.connect(backlog, autocommit=True) as conn:
        if plan_kind == "custom":
            plan = custom_plan(conn, QUERIES[query_name])
        else:
            plan = server_plan(conn, QUERIES[query_name], generic=plan_kind == "generic")
    # The forced generic plan of claim_jobs hash-joins `chosen` with a sequential scan of jobs:
    # with LIMIT unknown the planner expects hundreds of chosen rows. Its estimated cost is
    # ~10x the custom plan's, so the plan cache never picks it ("prepared" checks that); only
    # job_executions is held to it.
    forbidden = {"job_executions"} if plan_kind == "generic" else {"job_executions", "jobs"}
    nodes = list(plan_nodes(plan))
    seq_scans = [
        n["Relation Name"]
        for n in nodes
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in forbidden
    ]
    assert seq_scans == [], f"sequential scan in {query_name}:\n{describe(plan)}"
    claim_index = [
        n
        for n in nodes
        if n["Node Type"] in ("Index Scan", "Index Only Scan")
        and n.get("Index Name") == "idx_job_executions_claim_priority"
    ]
    assert claim_index, f"{query_name} does not use the claim index:\n{describe(plan)}"
