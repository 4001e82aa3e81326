"""Failure isolation inside one batch transaction: ``CurrentBatch.run_isolated`` (a savepoint
per item) and ``CurrentBatch.run_bisected`` (split failing groups, within a probe budget).

Every probe writes one business row per item of its group, in the batch's transaction; the
rows left after the batch commits are exactly those of the groups that succeeded, so each test
also proves that a failed probe's writes were rolled back (on both backends).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from job import Complete, JobState, RetryLater, RetrySettings
from job.batch import probes_for
from job.testing import drain
from tests.support import Cfg, FnBatchedInitializer, runner_sql, service_sql

pytestmark = pytest.mark.anyio

NO_JITTER = RetrySettings(backoff_jitter_pct=0, min_backoff=timedelta(seconds=10))


async def _setup(make_jobs, manual_clock, body, n: int, **kwargs: Any):
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock)
    await service_sql(jobs, "CREATE TABLE items_done (n INTEGER UNIQUE)")
    spawner = jobs.add_initializer(
        FnBatchedInitializer("isolated", body, batch_size=n, retry=NO_JITTER, **kwargs)
    )
    created = await spawner.spawn_many([Cfg(n=i) for i in range(n)])
    await jobs.start_poll()
    return jobs, controller, created


async def _done(jobs) -> list[int]:
    return [n for (n,) in await service_sql(jobs, "SELECT n FROM items_done ORDER BY n")]


# -- run_isolated -------------------------------------------------------------------------------


async def test_run_isolated_keeps_batch_mates_after_a_per_item_database_error(
    make_jobs, manual_clock
):
    """Item 1 violates the table's UNIQUE constraint (a real database error, which on
    PostgreSQL aborts the transaction): only its savepoint rolls back; items 0 and 2 commit
    their rows and complete; item 1 retries alone and, its conflict gone, recovers."""

    async def write(item):
        n = item.config.n
        value = 0 if n == 1 and item.attempt == 1 else n  # collides with item 0's row
        await runner_sql(item, "INSERT INTO items_done VALUES (%s)", (value,))
        return Complete()

    async def body(batch):
        return await batch.run_isolated(write)

    jobs, controller, created = await _setup(make_jobs, manual_clock, body, 3)
    await drain(jobs)
    assert await _done(jobs) == [0, 2]
    states = [(await jobs.find(job.id)).state for job in created]
    assert states == [JobState.COMPLETED, JobState.PENDING, JobState.COMPLETED]
    retrying = await jobs.find(created[1].id)
    assert retrying.attempt == 2
    assert "unique" in retrying.last_error.lower()
    await controller.advance(timedelta(seconds=11))
    await drain(jobs)
    assert await _done(jobs) == [0, 1, 2]
    assert (await jobs.find(created[1].id)).state is JobState.COMPLETED


async def test_run_isolated_rolls_back_an_item_that_asks_to_retry(make_jobs, manual_clock):
    """An item returning RetryLater keeps none of its writes; one returning a non-outcome
    fails alone with a TypeError; the others' writes and outcomes stand."""

    async def write(item):
        await runner_sql(item, "INSERT INTO items_done VALUES (%s)", (item.config.n,))
        if item.config.n == 0:
            return RetryLater("not yet")
        if item.config.n == 1:
            return "oops"
        return Complete()

    async def body(batch):
        return await batch.run_isolated(write)

    jobs, _, created = await _setup(make_jobs, manual_clock, body, 3)
    await drain(jobs)
    assert await _done(jobs) == [2]
    first, second, third = [await jobs.find(job.id) for job in created]
    assert first.last_error == "not yet" and first.attempt == 2
    assert second.last_error.startswith("TypeError") and second.attempt == 2
    assert third.state is JobState.COMPLETED


# -- run_bisected --------------------------------------------------------------------------------


class Prober:
    """A run_bisected function: writes a row per item of the group, then fails if the group
    holds a culprit (or, for ``pairs``, both items of a coupled pair)."""

    def __init__(self, culprits: Sequence[int] = (), pairs: Sequence[tuple[int, int]] = ()):
        self.culprits = set(culprits)
        self.pairs = list(pairs)
        self.probes: list[list[int]] = []

    async def __call__(self, items) -> None:
        ns = [item.config.n for item in items]
        self.probes.append(ns)
        for item in items:
            await runner_sql(item, "INSERT INTO items_done VALUES (%s)", (item.config.n,))
        bad = self.culprits & set(ns)
        if bad:
            raise ValueError(f"bad items {sorted(bad)}")
        for a, b in self.pairs:
            if a in ns and b in ns:
                raise ValueError(f"{a} and {b} conflict")


def _bisecting(prober: Any, budget: Any = "auto"):
    async def body(batch):
        return await batch.run_bisected(prober, budget=budget)

    return body


async def _outcome_states(jobs, created) -> list[str]:
    return [(await jobs.find(job.id)).state.value for job in created]


async def test_a_clean_batch_probes_once(make_jobs, manual_clock):
    prober = Prober()
    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(prober), 6)
    await drain(jobs)
    assert prober.probes == [list(range(6))]
    assert await _done(jobs) == list(range(6))
    assert set(await _outcome_states(jobs, created)) == {"completed"}


async def test_one_culprit_is_isolated_within_the_auto_budget(make_jobs, manual_clock):
    """N = 10, one culprit: at most 2*ceil(log2 10)+1 = 9 probes; the culprit alone fails,
    with its own error; the other nine complete and keep exactly one row each."""
    prober = Prober(culprits=[6])
    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(prober), 10)
    await drain(jobs)
    assert len(prober.probes) <= 9 == probes_for("auto", 10)
    assert await _done(jobs) == [n for n in range(10) if n != 6]
    states = await _outcome_states(jobs, created)
    assert states == ["completed"] * 6 + ["pending"] + ["completed"] * 3
    assert (await jobs.find(created[6].id)).last_error == "ValueError: bad items [6]"


async def test_scattered_culprits_do_not_poison_clean_siblings(make_jobs, manual_clock):
    prober = Prober(culprits=[1, 6])
    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(prober, "full"), 8)
    await drain(jobs)
    assert await _done(jobs) == [0, 2, 3, 4, 5, 7]
    states = await _outcome_states(jobs, created)
    assert [n for n, s in enumerate(states) if s == "pending"] == [1, 6]


async def test_an_all_bad_batch_is_fully_resolved_in_2n_minus_1_probes(make_jobs, manual_clock):
    prober = Prober(culprits=range(5))
    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(prober, "full"), 5)
    await drain(jobs)
    assert len(prober.probes) == 9
    assert await _done(jobs) == []
    for n, job in enumerate(created):
        assert (await jobs.find(job.id)).last_error == f"ValueError: bad items [{n}]"


async def test_a_tight_budget_salvages_the_largest_groups_first(make_jobs, manual_clock):
    """N = 8, culprit 0, three probes: [0..8) fails, then the two halves (largest first, then
    batch order): [0..4) fails, [4..8) succeeds. The budget is spent: items 0-3 fail saying
    so, 4-7 complete."""
    prober = Prober(culprits=[0])
    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(prober, 3), 8)
    await drain(jobs)
    assert prober.probes == [list(range(8)), [0, 1, 2, 3], [4, 5, 6, 7]]
    assert await _done(jobs) == [4, 5, 6, 7]
    unresolved = await jobs.find(created[2].id)
    assert unresolved.last_error.startswith("not isolated within the probe budget (3)")
    assert "bad items [0]" in unresolved.last_error


async def test_a_budget_of_one_is_all_or_nothing(make_jobs, manual_clock):
    prober = Prober(culprits=[3])
    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(prober, 1), 4)
    await drain(jobs)
    assert prober.probes == [[0, 1, 2, 3]]
    assert set(await _outcome_states(jobs, created)) == {"pending"}
    assert await _done(jobs) == []


async def test_a_coupled_pair_resolves_by_probe_order(make_jobs, manual_clock):
    """Items 1 and 2 fail only together: the split separates them and both then succeed,
    the same way every time."""
    prober = Prober(pairs=[(1, 2)])
    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(prober), 4)
    await drain(jobs)
    assert prober.probes == [[0, 1, 2, 3], [0, 1], [2, 3]]
    assert await _done(jobs) == [0, 1, 2, 3]
    assert set(await _outcome_states(jobs, created)) == {"completed"}


async def test_a_conflict_is_re_probed_whole_and_not_charged(make_jobs, manual_clock):
    """The first two probes raise a deadlock error (SQLSTATE 40P01, as psycopg reports it):
    the same whole group is probed again, never split, and with a budget of one the third
    try still runs. A third conflict is an ordinary failure."""
    prober = Prober()
    conflicts = {"left": 2}

    async def flaky(items):
        await prober(items)
        if conflicts["left"]:
            conflicts["left"] -= 1
            raise psycopg.errors.DeadlockDetected("deadlock detected")

    jobs, _, created = await _setup(make_jobs, manual_clock, _bisecting(flaky, 1), 4)  # type: ignore[arg-type]
    await drain(jobs)
    assert prober.probes == [[0, 1, 2, 3]] * 3
    assert await _done(jobs) == [0, 1, 2, 3]
    assert set(await _outcome_states(jobs, created)) == {"completed"}


@pytest.mark.parametrize("budget", [0, -2, "some", True])
def test_a_budget_that_is_not_one_or_more_probes_is_refused(budget):
    with pytest.raises(ValueError, match="probe budget"):
        probes_for(budget, 4)


@pytest.mark.parametrize(("n", "auto", "full"), [(1, 1, 1), (2, 3, 3), (10, 9, 19), (16, 9, 31)])
def test_probe_budgets(n, auto, full):
    assert probes_for("auto", n) == auto
    assert probes_for("full", n) == full
