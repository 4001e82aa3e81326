"""Job type names are validated at registration, and no notification payload can poison the
emitter: a bad one is dropped or replaced by a generic wake-up, the others still go out."""

from __future__ import annotations

import json
from datetime import timedelta

import anyio
import pytest

from job import Jobs
from job.backends.postgres.notify import ANY_READY_PAYLOAD, MAX_PAYLOAD_BYTES, ready_payload
from job.errors import ConfigError
from job.testing import wait_for_poll
from tests.fixtures.service import make_config
from tests.support import Cfg, FnInitializer, complete, execute

pytestmark = pytest.mark.anyio

# A worker that is only woken by notifications within the test's time (60 s backstop).
SLOW_BACKSTOP = {"max_poll_wait": timedelta(seconds=60)}


def unopened_jobs() -> Jobs:
    return Jobs(make_config("postgresql://nobody@127.0.0.1:1/none"))


@pytest.mark.parametrize(
    "job_type",
    [
        "x" * 10_000,
        "a" * 129,
        "",
        "send email",
        "nul\x00byte",
        "new\nline",
        "trailing\n",
        "-leading-dash",
        ".leading-dot",
        "tab\there",
        "ümlaut",
    ],
    ids=lambda s: repr(s[:16]) + (f"...({len(s)})" if len(s) > 16 else ""),
)
def test_add_initializer_rejects_bad_job_types(job_type: str) -> None:
    jobs = unopened_jobs()
    with pytest.raises(ConfigError, match="1 to 128 characters of A-Z a-z 0-9") as info:
        jobs.add_initializer(FnInitializer(job_type, complete))
    assert len(str(info.value)) < 400  # a 10k name is not echoed in full
    assert jobs._registry.job_types == []


@pytest.mark.parametrize(
    "job_type", ["a", "a" * 128, "_private", "9lives", "app.mail:send/v2-x_y"]
)
def test_add_initializer_accepts_names_within_the_rule(job_type: str) -> None:
    jobs = unopened_jobs()
    jobs.add_initializer(FnInitializer(job_type, complete))
    assert jobs._registry.job_types == [job_type]


def test_every_valid_name_makes_a_short_specific_payload() -> None:
    payload = ready_payload("a" * 128)
    assert json.loads(payload) == {"type": "execution_ready", "job_type": "a" * 128}
    assert len(payload.encode()) < 200 < MAX_PAYLOAD_BYTES


def too_long_payload(job_type: str) -> str:
    """An execution_ready naming ``job_type`` but longer than pg_notify accepts (8000 bytes)."""
    return json.dumps({"type": "execution_ready", "job_type": job_type, "pad": "x" * 9000})


async def test_valid_spawns_still_wake_other_workers_after_poisoned_payloads(make_pg_jobs):
    """A too-long payload and one the database refuses (NUL) are attempted first; the emitter
    still goes idle, and a valid spawn wakes another worker at once (not after the 60 s
    backstop). Before the fix the emitter retried the bad batch forever."""
    worker = await make_pg_jobs(**SLOW_BACKSTOP)
    worker.add_initializer(FnInitializer("good", complete))
    await worker.start_poll()
    producer = await make_pg_jobs(**SLOW_BACKSTOP)
    spawner = producer.add_initializer(FnInitializer("good", complete))
    notifier = producer._backend._notifier
    assert notifier is not None

    notifier.publish("x" * 10_000)
    notifier.publish('{"type": "execution_ready", "job_type": "good"}\x00')
    with anyio.fail_after(5):
        await notifier.flush()  # both attempted, none retried forever

    job = await spawner.spawn(Cfg())
    done = await worker.await_completion(job.id, timeout=5)
    assert done.events[-1].type == "job_completed"

    # The same in one batch: the bad payloads queued together with a valid spawn's.
    notifier.publish("y" * 10_000)
    notifier.publish('{"type": "execution_ready", "job_type": "good", "n": "\x00"}')
    job = await spawner.spawn(Cfg())
    done = await worker.await_completion(job.id, timeout=5)
    assert done.events[-1].type == "job_completed"
    with anyio.fail_after(5):
        await notifier.flush()


async def test_a_too_long_payload_is_sent_as_a_wake_up_for_any_type(make_pg_jobs, db_dsn):
    """The payload is replaced by an execution_ready without a job_type, and the listener
    treats that as "any type": the worker polls and runs a job that became due without a
    notification of its own."""
    assert json.loads(ANY_READY_PAYLOAD) == {"type": "execution_ready"}
    worker = await make_pg_jobs(**SLOW_BACKSTOP)
    worker.add_initializer(FnInitializer("quiet", complete))
    await worker.start_poll()
    producer = await make_pg_jobs(**SLOW_BACKSTOP)
    spawner = producer.add_initializer(FnInitializer("quiet", complete))
    job = await spawner.spawn(Cfg(), delay=timedelta(hours=1))
    await wait_for_poll(worker)  # nothing due: the worker sleeps for up to 60 s
    await execute(
        db_dsn,
        "UPDATE job_executions SET execute_at = clock_timestamp() - interval '1 second'"
        " WHERE id = %s",
        (job.id,),
    )
    assert producer._backend._notifier is not None
    producer._backend._notifier.publish(too_long_payload("quiet"))
    done = await worker.await_completion(job.id, timeout=5)
    assert done.events[-1].type == "job_completed"
