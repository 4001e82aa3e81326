"""Unit and property tests for ``job.retry`` (ports the crate's entity.rs anchors)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from job.retry import RetryDecision, RetrySettings

U32_MAX = 2**32 - 1
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def no_jitter(**overrides: object) -> RetrySettings:
    """Crate test settings: 100 ms .. 60 s, deterministic."""
    fields: dict[str, object] = {
        "min_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=60),
        "backoff_jitter_pct": 0,
    }
    fields.update(overrides)
    return RetrySettings.model_validate(fields)


def ms(value: timedelta) -> int:
    return value // timedelta(milliseconds=1)


def expected_base(settings: RetrySettings, attempt: int) -> int:
    k = min(max(attempt, 1) - 1, 30)
    return min(ms(settings.min_backoff) * (1 << k), ms(settings.max_backoff))


# --------------------------------------------------------------------------- settings


def test_defaults_match_crate() -> None:
    """Defaults are 30 runs, WARN up to 3, 1 s .. 1 h, 20% jitter, reset after 3x."""
    s = RetrySettings()
    assert s.n_attempts == 30
    assert s.n_warn_attempts == 3
    assert s.min_backoff == timedelta(seconds=1)
    assert s.max_backoff == timedelta(hours=1)
    assert s.backoff_jitter_pct == 20
    assert s.attempt_reset_after_backoff_multiples == 3


def test_repeat_indefinitely_only_lifts_attempt_limit() -> None:
    """repeat_indefinitely() is the defaults with n_attempts=None."""
    s = RetrySettings.repeat_indefinitely()
    assert s.n_attempts is None
    assert s.model_dump(exclude={"n_attempts"}) == RetrySettings().model_dump(
        exclude={"n_attempts"}
    )


def test_settings_are_frozen_and_hashable() -> None:
    """Settings are immutable values."""
    s = RetrySettings()
    with pytest.raises(ValidationError):
        s.n_attempts = 5  # type: ignore[misc]
    assert hash(s) == hash(RetrySettings())


def test_rejects_max_backoff_below_min_backoff() -> None:
    """max_backoff < min_backoff is a validation error naming both fields."""
    with pytest.raises(ValidationError, match="max_backoff"):
        RetrySettings(min_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=1))


def test_rejects_negative_min_backoff() -> None:
    """A negative min_backoff is rejected."""
    with pytest.raises(ValidationError, match="min_backoff"):
        RetrySettings(min_backoff=timedelta(seconds=-1))


def test_rejects_jitter_pct_above_100() -> None:
    """backoff_jitter_pct is limited to 0..100."""
    with pytest.raises(ValidationError):
        RetrySettings(backoff_jitter_pct=101)
    with pytest.raises(ValidationError):
        RetrySettings(backoff_jitter_pct=-1)


def test_rejects_zero_attempts() -> None:
    """n_attempts counts all runs, so it must be >= 1 when set."""
    with pytest.raises(ValidationError):
        RetrySettings(n_attempts=0)
    assert RetrySettings(n_attempts=1).n_attempts == 1


def test_rejects_unknown_fields() -> None:
    """Typos in settings are errors, not silently ignored."""
    with pytest.raises(ValidationError):
        RetrySettings.model_validate({"n_attempt": 3})


# --------------------------------------------------------------------------- backoff


def test_exponential_backoff_grows_correctly() -> None:
    """Attempts 1..4 give 100, 200, 400, 800 ms."""
    s = no_jitter()
    assert [ms(s.backoff(a)) for a in (1, 2, 3, 4)] == [100, 200, 400, 800]


def test_zero_attempt_handled_correctly() -> None:
    """Attempt 0 is treated like attempt 1."""
    assert ms(no_jitter().backoff(0)) == 100


@pytest.mark.parametrize("attempt", [20, 31, 100, 1000, U32_MAX])
def test_high_attempts_capped_at_max_backoff(attempt: int) -> None:
    """Large attempts are capped at max_backoff (60 s)."""
    assert ms(no_jitter().backoff(attempt)) == 60_000


def test_attempts_capped_at_30() -> None:
    """The exponent stops growing at 30 even when max_backoff is larger."""
    s = no_jitter(max_backoff=timedelta(days=100_000))
    assert ms(s.backoff(31)) == 100 * 2**30
    assert s.backoff(31) == s.backoff(32) == s.backoff(U32_MAX)


def test_jitter_adds_randomness() -> None:
    """20% jitter at attempt 1 stays within [80, 120] ms and varies by seed."""
    s = no_jitter(backoff_jitter_pct=20)
    values = {ms(s.backoff(1, rng=random.Random(seed))) for seed in range(200)}
    assert all(80 <= v <= 120 for v in values)
    assert len(values) > 1


def test_jitter_without_rng_uses_module_random() -> None:
    """Without an explicit rng the delay is base + random.randint(-spread, spread) drawn from
    the module-level generator: reseeding it reproduces the exact delay, and it varies."""
    s = no_jitter(backoff_jitter_pct=20)  # base 100 ms, spread 20 ms
    seen = set()
    for seed in range(50):
        expected = 100 + random.Random(seed).randint(-20, 20)
        random.seed(seed)
        assert ms(s.backoff(1)) == expected
        seen.add(expected)
    assert len(seen) > 10


class Extreme(random.Random):
    """An rng that always draws the lowest (or highest) value randint allows."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high
        self.calls: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.calls.append((a, b))
        return b if self.high else a


@pytest.mark.parametrize(
    ("pct", "low", "high"), [(1, 99, 101), (20, 80, 120), (50, 50, 150), (100, 0, 200)]
)
def test_jitter_spans_exactly_plus_minus_pct(pct: int, low: int, high: int) -> None:
    """The jitter draws from [-spread, +spread] with spread = base * pct // 100, so the
    extreme draws give exactly base -/+ pct %. At 100 % the low end is exactly 0: a delay
    saturates at zero, never below (the clamp at 0 itself is unreachable for pct <= 100)."""
    s = no_jitter(backoff_jitter_pct=pct)  # base 100 ms at attempt 1, cap 60 s
    for is_high, want in ((False, low), (True, high)):
        rng = Extreme(is_high)
        assert ms(s.backoff(1, rng=rng)) == want
        assert rng.calls == [(-(100 * pct // 100), 100 * pct // 100)]


def test_jitter_is_clamped_at_max_backoff() -> None:
    """At the cap the upward draw is clamped to max_backoff and the downward one is not."""
    s = no_jitter(backoff_jitter_pct=20)  # base = cap = 60 s from attempt 11 on
    assert ms(s.backoff(20, rng=Extreme(True))) == 60_000
    assert ms(s.backoff(20, rng=Extreme(False))) == 48_000


def test_deterministic_without_jitter() -> None:
    """With pct 0 the result does not depend on the rng."""
    s = no_jitter()
    assert {s.backoff(3, rng=random.Random(seed)) for seed in range(20)} == {
        timedelta(milliseconds=400)
    }


def test_apply_jitter_survives_huge_backoff_without_overflow() -> None:
    """A maximal max_backoff with maximal jitter never errors and stays capped."""
    s = RetrySettings(
        min_backoff=timedelta.max,
        max_backoff=timedelta.max,
        backoff_jitter_pct=100,
    )
    for seed in range(50):
        for attempt in (0, 1, 31, U32_MAX):
            value = s.backoff(attempt, rng=random.Random(seed))
            assert timedelta(0) <= value <= s.max_backoff


# --------------------------------------------------------------------------- reset


def test_should_reset_attempt_count_returns_false_when_schedule_in_future() -> None:
    """No reset while the retry is not yet due."""
    s = RetrySettings()
    assert not s.should_reset_attempt(
        attempt=3,
        schedule_written_at=T0,
        execute_at=T0 + timedelta(seconds=10),
        now=T0 + timedelta(seconds=5),
    )


def test_should_reset_attempt_count_returns_false_when_within_threshold() -> None:
    """Failing within (and exactly at) multiples x backoff does not reset."""
    s = RetrySettings()
    due = T0 + timedelta(seconds=10)
    for gap in (timedelta(0), timedelta(seconds=15), timedelta(seconds=30)):
        assert not s.should_reset_attempt(
            attempt=3, schedule_written_at=T0, execute_at=due, now=due + gap
        )


def test_should_reset_attempt_count_returns_true_when_past_threshold() -> None:
    """Failing more than multiples x backoff after being due resets."""
    s = RetrySettings()
    due = T0 + timedelta(seconds=10)
    assert s.should_reset_attempt(
        attempt=3,
        schedule_written_at=T0,
        execute_at=due,
        now=due + timedelta(seconds=30, microseconds=1),
    )


def test_should_reset_rejects_inverted_ranges() -> None:
    """An empty or inverted window (written_at >= execute_at) never resets."""
    s = RetrySettings()
    later = T0 + timedelta(days=365)
    for written_at in (T0, T0 + timedelta(seconds=1)):
        assert not s.should_reset_attempt(
            attempt=3, schedule_written_at=written_at, execute_at=T0, now=later
        )


def test_should_reset_returns_false_for_initial_attempt() -> None:
    """A first run has no retry window, so it never resets."""
    s = RetrySettings()
    for attempt in (0, 1):
        assert not s.should_reset_attempt(
            attempt=attempt,
            schedule_written_at=T0,
            execute_at=T0 + timedelta(seconds=1),
            now=T0 + timedelta(days=1),
        )


def test_should_reset_with_zero_multiples_resets_after_any_gap() -> None:
    """multiples=0 resets as soon as any time passed after the retry became due."""
    s = RetrySettings(attempt_reset_after_backoff_multiples=0)
    due = T0 + timedelta(seconds=10)
    kwargs = {"attempt": 3, "schedule_written_at": T0, "execute_at": due}
    assert not s.should_reset_attempt(now=due, **kwargs)  # type: ignore[arg-type]
    assert s.should_reset_attempt(now=due + timedelta(microseconds=1), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- decide


def decide(settings: RetrySettings, attempt: int, **kw: object) -> RetryDecision:
    """decide() with a 'not yet healthy' window: failed right when due."""
    args: dict[str, object] = {
        "attempt": attempt,
        "schedule_written_at": T0 - timedelta(seconds=1),
        "execute_at": T0,
        "now": T0,
    }
    args.update(kw)
    return settings.decide(**args)  # type: ignore[arg-type]


def test_maybe_schedule_retry_emits_next_attempt_when_allowed() -> None:
    """A failure below the limit schedules attempt+1 after the backoff."""
    d = decide(no_jitter(), 1)
    assert d == RetryDecision(
        will_retry=True,
        reset=False,
        attempt=1,
        next_attempt=2,
        retry_at=T0 + timedelta(milliseconds=100),
        level="WARN",
    )


def test_maybe_schedule_retry_handles_zero_attempt_index() -> None:
    """Attempt 0 is treated as 1: next attempt is 2, first backoff applies."""
    d = decide(no_jitter(), 0)
    assert (d.will_retry, d.attempt, d.next_attempt) == (True, 1, 2)
    assert d.retry_at == T0 + timedelta(milliseconds=100)


def test_maybe_schedule_retry_records_terminal_failure_when_limit_hit() -> None:
    """When attempt+1 exceeds n_attempts the failure is terminal at ERROR."""
    d = decide(no_jitter(n_attempts=3), 3)
    assert d == RetryDecision(
        will_retry=False,
        reset=False,
        attempt=3,
        next_attempt=4,
        retry_at=None,
        level="ERROR",
    )


def test_n_attempts_one_never_retries() -> None:
    """n_attempts=1 means the first failure is terminal."""
    assert not decide(no_jitter(n_attempts=1), 1).will_retry


def test_maybe_schedule_retry_allows_retry_when_next_attempt_hits_limit() -> None:
    """next_attempt == n_attempts is still allowed (n_attempts counts all runs)."""
    d = decide(no_jitter(n_attempts=3), 2)
    assert (d.will_retry, d.next_attempt) == (True, 3)
    assert d.retry_at == T0 + timedelta(milliseconds=200)


def test_maybe_schedule_retry_resets_attempt_after_healthy_gap() -> None:
    """A retried run failing long after it was due restarts at attempt 1."""
    written, due = T0, T0 + timedelta(seconds=10)
    now = due + timedelta(seconds=31)
    d = no_jitter().decide(attempt=5, schedule_written_at=written, execute_at=due, now=now)
    assert d == RetryDecision(
        will_retry=True,
        reset=True,
        attempt=1,
        next_attempt=2,
        retry_at=now + timedelta(milliseconds=100),
        level="WARN",
    )


def test_maybe_schedule_retry_resets_even_when_retry_limit_reached() -> None:
    """The reset happens before the limit check, so an exhausted job retries."""
    written, due = T0, T0 + timedelta(seconds=10)
    now = due + timedelta(seconds=31)
    s = no_jitter(n_attempts=3)
    # Sanity: failing right when due (no healthy gap) is terminal.
    assert not s.decide(attempt=3, schedule_written_at=written, execute_at=due, now=due).will_retry
    d = s.decide(attempt=3, schedule_written_at=written, execute_at=due, now=now)
    assert (d.will_retry, d.reset, d.attempt, d.next_attempt) == (True, True, 1, 2)


def test_maybe_schedule_retry_with_unbounded_limit_handles_saturation() -> None:
    """With n_attempts=None even the largest attempt retries, at the cap."""
    d = decide(no_jitter(n_attempts=None), U32_MAX)
    assert (d.will_retry, d.attempt, d.next_attempt) == (True, U32_MAX, U32_MAX + 1)
    assert d.retry_at == T0 + timedelta(seconds=60)
    assert d.level == "ERROR"


def test_warn_then_error_escalation_with_default_warn_attempts() -> None:
    """Default n_warn_attempts=3: failures of attempts 1-2 WARN, 3+ ERROR."""
    s = no_jitter()
    levels = [decide(s, a).level for a in range(1, 7)]
    assert levels == ["WARN", "WARN", "ERROR", "ERROR", "ERROR", "ERROR"]


def test_no_escalation_when_warn_attempts_is_none() -> None:
    """n_warn_attempts=None keeps retryable failures at WARN; terminal is ERROR."""
    s = no_jitter(n_warn_attempts=None, n_attempts=10)
    assert {decide(s, a).level for a in range(1, 10)} == {"WARN"}
    assert decide(s, 10).level == "ERROR"


def test_explicit_delay_overrides_backoff() -> None:
    """A caller-supplied delay replaces the computed backoff."""
    d = decide(RetrySettings(), 4, delay=timedelta(minutes=7))
    assert d.retry_at == T0 + timedelta(minutes=7)


def test_decide_passes_rng_to_backoff() -> None:
    """The same seed yields the same jittered retry time."""
    s = RetrySettings()
    a = decide(s, 2, rng=random.Random(7))
    b = decide(s, 2, rng=random.Random(7))
    assert a.retry_at == b.retry_at


# --------------------------------------------------------------------------- properties

MAX_MS = 10**15  # ~31,700 years, still well inside timedelta's range


@st.composite
def settings_st(draw: st.DrawFn, *, max_ms: int = MAX_MS, jitter: bool = True) -> RetrySettings:
    lo = draw(st.integers(0, max_ms))
    hi = draw(st.integers(lo, max_ms))
    pct = draw(st.integers(0, 100)) if jitter else 0
    return RetrySettings(
        min_backoff=timedelta(milliseconds=lo),
        max_backoff=timedelta(milliseconds=hi),
        backoff_jitter_pct=pct,
        n_attempts=draw(st.none() | st.integers(1, 50)),
        n_warn_attempts=draw(st.none() | st.integers(0, 50)),
        attempt_reset_after_backoff_multiples=draw(st.integers(0, 10)),
    )


attempts = st.integers(0, 2**40)


@given(settings_st(), attempts, st.randoms(use_true_random=False))
def test_backoff_always_within_zero_and_max(
    s: RetrySettings, attempt: int, rng: random.Random
) -> None:
    """backoff() is always within [0, max_backoff]."""
    assert timedelta(0) <= s.backoff(attempt, rng=rng) <= s.max_backoff


@given(settings_st(jitter=False), st.integers(0, 200))
def test_backoff_without_jitter_is_exact_and_monotonic(s: RetrySettings, attempt: int) -> None:
    """Without jitter, backoff = min(min * 2**(a-1), max) and never decreases."""
    assert ms(s.backoff(attempt)) == expected_base(s, attempt)
    assert s.backoff(attempt) <= s.backoff(attempt + 1)


@given(settings_st(), attempts, st.randoms(use_true_random=False))
def test_backoff_with_jitter_stays_within_spread(
    s: RetrySettings, attempt: int, rng: random.Random
) -> None:
    """With jitter the result lies in [base - j, base + j], clamped to [0, max]."""
    base = expected_base(s, attempt)
    max_ms = ms(s.max_backoff)
    j = min(base * s.backoff_jitter_pct // 100, max_ms)
    value = ms(s.backoff(attempt, rng=rng))
    assert max(base - j, 0) <= value <= min(base + j, max_ms)


@given(
    settings_st(max_ms=10**10),
    st.integers(0, 100),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ),
    st.integers(-(10**12), 10**12),
    st.integers(-(10**12), 10**12),
    st.randoms(use_true_random=False),
)
def test_decide_retry_at_not_before_now(
    s: RetrySettings,
    attempt: int,
    now: datetime,
    written_offset_ms: int,
    due_offset_ms: int,
    rng: random.Random,
) -> None:
    """When decide() retries, retry_at >= now; attempt bookkeeping is coherent."""
    d = s.decide(
        attempt=attempt,
        schedule_written_at=now + timedelta(milliseconds=written_offset_ms),
        execute_at=now + timedelta(milliseconds=due_offset_ms),
        now=now,
        rng=rng,
    )
    assert d.next_attempt == d.attempt + 1
    assert d.attempt >= 1
    if d.reset:
        assert d.attempt == 1
    if d.will_retry:
        assert d.retry_at is not None
        assert now <= d.retry_at <= now + s.max_backoff
    else:
        assert d.retry_at is None
        assert d.level == "ERROR"
        assert s.n_attempts is not None
        assert d.next_attempt > s.n_attempts
