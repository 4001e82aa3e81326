"""Per-type concurrency caps: ``JobInitializer.max_concurrent_per_process()``.

A claim never takes more jobs of a capped type than its free slots; a type at its cap never
holds up the other types; a freed slot wakes the poller; a cap below 1 is a ConfigError at
``add_initializer``; ``None`` (the default) leaves only ``max_jobs_per_process``. See
docs/queues.md.

Every run is held by the test until released, and counts itself in and out, so "at most two
at once" is measured inside the runner; the clock is frozen and the backstop poll an hour away,
so the next run after a release starts only because the freed slot woke the poller.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import Complete, ConfigError, JobState
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio

LONG_WAIT = timedelta(hours=1)


class CappedInitializer(FnInitializer):
    def __init__(self, job_type: str, fn: Any, cap: int | None) -> None:
        super().__init__(job_type, fn)
        self.cap = cap

    def max_concurrent_per_process(self) -> int | None:
        return self.cap


class Gate:
    """A runner body that holds every run until :meth:`release` and tracks the runs in
    progress: ``running`` (config.n, in start order), ``peak`` (most at once)."""

    def __init__(self, hold: bool = True) -> None:
        self.hold = hold
        self.running: list[int] = []
        self.started: list[int] = []
        self.peak = 0
        self._release: dict[int, anyio.Event] = {}
        self._changed = anyio.Event()

    def _event(self, n: int) -> anyio.Event:
        return self._release.setdefault(n, anyio.Event())

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def release(self, *ns: int) -> None:
        for n in ns:
            self._event(n).set()

    def release_all(self) -> None:
        self.release(*self.started, *self._release)

    async def wait_for(
        self, predicate: Callable[[], bool], what: str, timeout: float = 10
    ) -> None:
        try:
            with anyio.fail_after(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; running {self.running}") from None

    async def run(self, current: Any) -> Complete:
        n = current.config.n
        self.running.append(n)
        self.started.append(n)
        self.peak = max(self.peak, len(self.running))
        self._notify()
        try:
            if self.hold:
                await self._event(n).wait()
        finally:
            self.running.remove(n)
            self._notify()
        return Complete()


async def test_a_cap_of_two_is_never_exceeded_and_the_backlog_drains(make_jobs, job_database):
    """Six due jobs of a type capped at 2 (50 free slots): after every poll exactly two run
    and the rest stay pending; each release lets exactly one more start; all six complete."""
    gate = Gate()
    jobs = await make_jobs(max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(CappedInitializer("capped", gate.run, cap=2))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(6)])
    await jobs.start_poll()
    try:
        for finished in range(6):
            expected = min(2, 6 - finished)
            await gate.wait_for(lambda e=expected: len(gate.running) == e, f"{expected} runs")
            await wait_for_poll(jobs)  # a poll with room to spare takes no more of the type
            assert len(gate.running) == expected
            assert await job_database.count_in_state("running") == expected
            assert await job_database.count_in_state("pending") == 6 - finished - expected
            oldest = gate.running[0]
            gate.release(oldest)
            done = await jobs.await_completion(created[oldest].id, timeout=10)
            assert done.state is JobState.COMPLETED
    finally:
        gate.hold = False
        gate.release_all()
    assert gate.peak == 2
    assert sorted(gate.started) == list(range(6))
    assert await job_database.count("job_executions") == 0


async def test_the_cap_is_per_process(make_jobs, job_database):
    """Two services on one database, the type capped at 2 in each: four of the backlog run at
    once, two in each service."""
    gates = [Gate(), Gate()]
    services = [await make_jobs(max_poll_wait=LONG_WAIT) for _ in gates]
    spawners = [
        s.add_initializer(CappedInitializer("capped_pp", g.run, cap=2))
        for s, g in zip(services, gates, strict=True)
    ]
    created = await spawners[0].spawn_many([Cfg(n=n) for n in range(8)])
    try:
        for service, gate in zip(services, gates, strict=True):
            await service.start_poll()
            await gate.wait_for(lambda g=gate: len(g.running) == 2, "two runs in the service")
        for service in services:
            await wait_for_poll(service)
        assert [len(g.running) for g in gates] == [2, 2]
        assert await job_database.count_in_state("running") == 4
        assert await job_database.count_in_state("pending") == 4
    finally:
        for gate in gates:
            gate.hold = False
            gate.release_all()
    for job in created:
        assert (await services[0].await_completion(job.id, timeout=15)).state is JobState.COMPLETED
    assert [g.peak for g in gates] == [2, 2]


async def test_a_capped_type_at_its_cap_does_not_block_other_types(make_jobs, job_database):
    """X (capped at 1) has four due jobs, older than Y's three (uncapped); the process has
    three slots. With X's first run held, X's other jobs wait and all of Y's run and
    complete; then X drains one at a time."""
    x_gate = Gate()
    jobs = await make_jobs(max_poll_wait=LONG_WAIT, max_jobs_per_process=3, min_jobs_per_process=3)
    x = jobs.add_initializer(CappedInitializer("capped_x", x_gate.run, cap=1))
    y = jobs.add_initializer(FnInitializer("uncapped_y", complete))
    x_jobs = await x.spawn_many([Cfg(n=n) for n in range(4)])
    y_jobs = await y.spawn_many([Cfg(n=n) for n in range(10, 13)])
    await jobs.start_poll()
    try:
        await x_gate.wait_for(lambda: len(x_gate.running) == 1, "X's first run")
        for job in y_jobs:
            done = await jobs.await_completion(job.id, timeout=10)
            assert done.state is JobState.COMPLETED
        await wait_for_poll(jobs)
        assert len(x_gate.running) == 1
        assert await job_database.count_in_state("running") == 1
        assert await job_database.count_in_state("pending") == 3
        x_gate.hold = False
        x_gate.release_all()
        for job in x_jobs:
            done = await jobs.await_completion(job.id, timeout=10)
            assert done.state is JobState.COMPLETED
    finally:
        x_gate.hold = False
        x_gate.release_all()
    assert x_gate.peak == 1
    assert sorted(x_gate.started) == [0, 1, 2, 3]


@pytest.mark.parametrize("cap", [0, -1])
async def test_a_cap_below_one_is_a_config_error(make_jobs, cap):
    jobs = await make_jobs()
    with pytest.raises(ConfigError):
        jobs.add_initializer(CappedInitializer("bad_cap", complete, cap=cap))
    assert "bad_cap" not in jobs.job_types


@pytest.mark.parametrize("how", ["explicit-none", "default"])
async def test_no_cap_is_bounded_by_max_jobs_per_process(make_jobs, job_database, how):
    """Cap None (returned, or the default): six held jobs, four slots: four run at once."""
    gate = Gate()
    jobs = await make_jobs(max_poll_wait=LONG_WAIT, max_jobs_per_process=4, min_jobs_per_process=4)
    if how == "default":
        initializer = FnInitializer("uncapped", gate.run)
    else:
        initializer = CappedInitializer("uncapped", gate.run, cap=None)
    assert initializer.max_concurrent_per_process() is None
    spawner = jobs.add_initializer(initializer)
    created = await spawner.spawn_many([Cfg(n=n) for n in range(6)])
    await jobs.start_poll()
    try:
        await gate.wait_for(lambda: len(gate.running) == 4, "four runs")
        await wait_for_poll(jobs)
        assert len(gate.running) == 4
        assert await job_database.count_in_state("pending") == 2
    finally:
        gate.hold = False
        gate.release_all()
    for job in created:
        assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
    assert gate.peak == 4
