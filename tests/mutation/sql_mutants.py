"""Scripted SQL mutants of the Postgres backend's ``queries.sql``, each run against the database.

    python -m tests.mutation.sql_mutants            # every mutant
    python -m tests.mutation.sql_mutants --list     # what each one changes, and its tests
    python -m tests.mutation.sql_mutants claim_order_inner_desc heartbeat_noop
    python -m tests.mutation.sql_mutants --src-rev HEAD   # src/ as committed, tests as edited

Each mutant is one textual change to the claim, outcome, heartbeat or reclaim SQL (the bugs
that matter most and that no type checker sees). For each one the script copies the project to
a temporary directory (``_copy.project_copy``; the working tree is never written), applies the
change to the copy's ``queries.sql``, and runs only the fast tests named for it against a real
PostgreSQL (the suite starts its own unless ``JOB_TEST_DSN`` is set). A mutant is **killed** if
those tests fail, and **survives** if they pass. The baseline (no mutant) must pass first.

A mutant whose original text is no longer in ``queries.sql`` (someone changed the query) is
reported as STALE and the script fails: update its ``before``/``after`` text here.
The table this prints is the one in docs/testing.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.mutation._copy import check_imports_copy, copy_env, project_copy, run_pytest

QUERIES = Path("src/job/backends/postgres/queries.sql")
# The conformance tests run once per backend; these mutants change the PostgreSQL SQL only.
POSTGRES_ONLY = ("-k", "not sqlite")
INNER_ORDER = "ORDER BY e.execute_at, e.id\n        LIMIT"  # claim_jobs: the per-type probe
OUTER_ORDER = "FROM candidates ORDER BY execute_at, id LIMIT"  # claim_jobs: across types

ORDER = "tests/conformance/test_claim_order.py"
LIVENESS = "tests/conformance/test_liveness.py"
HEARTBEAT = f"{LIVENESS}::test_heartbeats_keep_a_long_healthy_job_alive"
FENCE = [
    f"{LIVENESS}::test_late_outcome_of_a_reclaimed_run_is_fenced_off",
    f"{LIVENESS}::test_late_outcome_through_the_writer_is_fenced_off",
    f"{LIVENESS}::test_stale_and_current_outcome_in_one_batch_write_only_the_current",
]


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    replacements: tuple[tuple[str, str], ...]  # (before, after); each before occurs once
    tests: tuple[str, ...]


UNREADABLE = (
    "tests/conformance/test_hardening.py::"
    "test_an_unreadable_row_is_isolated_and_the_worker_moves_on"
)

MUTANTS = [
    Mutant(
        "claim_order_inner_desc",
        "claim: per-type probe takes the newest due rows (ORDER BY ... DESC)",
        ((INNER_ORDER, "ORDER BY e.execute_at DESC, e.id DESC\n        LIMIT"),),
        (ORDER,),
    ),
    Mutant(
        "claim_order_outer_desc",
        "claim: across types keeps the newest candidates (ORDER BY ... DESC)",
        ((OUTER_ORDER, "FROM candidates ORDER BY execute_at DESC, id DESC LIMIT"),),
        (ORDER,),
    ),
    Mutant(
        "claim_tiebreak_reversed",
        "claim: equal due times taken in descending id order",
        (
            (INNER_ORDER, "ORDER BY e.execute_at, e.id DESC\n        LIMIT"),
            (OUTER_ORDER, "FROM candidates ORDER BY execute_at, id DESC LIMIT"),
        ),
        (ORDER,),
    ),
    Mutant(
        "claim_due_strict",
        "claim: due test execute_at < now instead of <=",
        (("AND e.execute_at <= %(now)s::timestamptz", "AND e.execute_at < %(now)s::timestamptz"),),
        (ORDER,),
    ),
    Mutant(
        "claim_no_skip_locked",
        "claim: FOR UPDATE without SKIP LOCKED (waits on rows another worker locks)",
        (("FOR UPDATE SKIP LOCKED\n    ) AS c", "FOR UPDATE\n    ) AS c"),),
        (
            "tests/backends/postgres/test_pg_locking.py::test_claim_skips_rows_locked_by_another_worker",
        ),
    ),
    Mutant(
        "outcome_fence_dropped",
        "apply_outcomes: no claim_token match (a reclaimed run's late outcome is applied)",
        (
            (
                "WHERE i.terminal AND e.id = i.id AND e.claim_token = i.claim_token",
                "WHERE i.terminal AND e.id = i.id",
            ),
            (
                "WHERE NOT i.terminal AND e.id = i.id AND e.claim_token = i.claim_token",
                "WHERE NOT i.terminal AND e.id = i.id",
            ),
        ),
        tuple(FENCE),
    ),
    Mutant(
        "heartbeat_noop",
        "heartbeat: SET alive_at = alive_at (never refreshes)",
        (("SET alive_at = clock_timestamp()\nFROM mine", "SET alive_at = alive_at\nFROM mine"),),
        (HEARTBEAT,),
    ),
    Mutant(
        "reclaim_same_attempt",
        "reclaim: attempt unchanged instead of attempt + 1",
        (("attempt = e.attempt + 1,", "attempt = e.attempt,"),),
        (LIVENESS,),
    ),
    Mutant(
        "reclaim_ignores_lost_interval",
        "reclaim: any running row with a heartbeat in the past is lost",
        (
            (
                "AND alive_at < clock_timestamp() - %(lost_interval)s::interval",
                "AND alive_at < clock_timestamp() + %(lost_interval)s::interval * 0",
            ),
        ),
        (HEARTBEAT,),
    ),
    Mutant(
        "reclaim_own_live_rows",
        "reclaim: this worker's own live rows are reclaimed too",
        (
            (
                "AND NOT (poller_instance_id = %(instance_id)s::uuid"
                " AND id = ANY(%(live_ids)s::uuid[]))",
                "AND %(instance_id)s::uuid IS NOT NULL AND %(live_ids)s::uuid[] IS NOT NULL",
            ),
        ),
        (HEARTBEAT,),
    ),
    Mutant(
        "claim_returns_unreadable_time",
        "claim: an out-of-range execute_at is returned as is (the driver cannot decode it)",
        (
            (
                "CASE WHEN e.execute_at\n" + " " * 20 + "BETWEEN '0001-01-02 00:00:00+00'"
                " AND '9999-12-30 00:00:00+00'\n" + " " * 15 + "THEN e.execute_at END,",
                "e.execute_at,",
            ),
        ),
        (UNREADABLE,),
    ),
    Mutant(
        "next_due_returns_unreadable_time",
        "next_due_at: an out-of-range future time is returned (every poll fails on it)",
        (
            (
                "\n           FILTER (WHERE n.execute_at BETWEEN '0001-01-02 00:00:00+00'"
                " AND '9999-12-30 00:00:00+00')",
                "",
            ),
        ),
        (UNREADABLE,),
    ),
]


def mutate(text: str, mutant: Mutant) -> str | None:
    """The mutated text, or None if an original fragment is not there exactly once."""
    for before, after in mutant.replacements:
        if text.count(before) != 1:
            return None
        text = text.replace(before, after)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--src-rev", metavar="REV", help="take src/ from this git revision (default: the tree)"
    )
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(unknown)}")
    selected = [by_name[n] for n in args.names] or MUTANTS
    if args.list:
        for m in selected:
            print(f"{m.name}: {m.what}\n    tests: {' '.join(m.tests)}")
        return 0

    rows: list[tuple[Mutant, str, float, str]] = []
    with project_copy(args.src_rev) as copy:
        check_imports_copy(copy)
        env = copy_env(copy)
        target = copy / QUERIES
        original = target.read_text()
        baseline_tests = sorted({t for m in selected for t in m.tests})
        print(f"baseline: {len(baseline_tests)} test selection(s) on the unmutated copy")
        base = run_pytest(copy, [*POSTGRES_ONLY, *baseline_tests], env=env)
        if base.returncode != 0:
            print(base.stdout[-4000:], base.stderr[-2000:])
            print("baseline failed: fix the tests (or wait for src to settle) first")
            return 2
        for m in selected:
            mutated = mutate(original, m)
            if mutated is None:
                rows.append((m, "STALE", 0.0, "original text not found exactly once"))
                continue
            target.write_text(mutated)
            began = time.monotonic()
            result = run_pytest(copy, [*POSTGRES_ONLY, *m.tests], env=env)
            secs = time.monotonic() - began
            target.write_text(original)
            if result.returncode == 0:
                rows.append((m, "SURVIVED", secs, ""))
            else:
                failed = [ln for ln in result.stdout.splitlines() if ln.startswith("FAILED")]
                rows.append((m, "killed", secs, failed[0][7:] if failed else "(error)"))
            print(f"{m.name}: {rows[-1][1]} in {secs:.1f}s {rows[-1][3]}", flush=True)

    print("\n| Mutant | Change | Result | Killed by (first failure) |")
    print("|---|---|---|---|")
    for m, status, _, detail in rows:
        print(f"| `{m.name}` | {m.what} | {status} | {detail} |")
    killed = sum(1 for r in rows if r[1] == "killed")
    print(f"\n{killed}/{len(rows)} SQL mutants killed")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
