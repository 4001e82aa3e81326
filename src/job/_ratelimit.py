"""Rate limits: token-bucket arithmetic shared by both backends (``Backend.take_tokens``, pure)
and the take-or-wait loop behind ``CurrentJob.rate_limit``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from job.errors import ConfigError, RateLimitedError
from job.limits import add_clamped

if TYPE_CHECKING:
    from job._backend import Backend
    from job.clock import ClockHandle


def refilled(
    tokens: float, capacity: float, per_second: float, updated_at: datetime, now: datetime
) -> float:
    """The bucket's tokens at ``now``: refilled since ``updated_at`` (none before it: a
    drained bucket's ``updated_at`` is in the future), at most ``capacity``."""
    if now <= updated_at:
        return tokens
    return min(capacity, tokens + (now - updated_at).total_seconds() * per_second)


def token_wait(
    available: float, per_second: float, updated_at: datetime, n: float, now: datetime
) -> float:
    """0.0 if ``n`` tokens were available (and so taken); else how many seconds until they
    will be: the rest of a drain, plus the refill of the missing tokens."""
    if available >= n:
        return 0.0
    blocked = max(0.0, (updated_at - now).total_seconds())
    return blocked + (n - available) / per_second


def check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not scope or len(scope) > 200 or "\x00" in scope:
        raise ConfigError(f"a rate-limit scope must be 1 to 200 characters, got {scope!r}")
    return scope


async def take_rate_limit(
    backend: Backend, clock: ClockHandle, scope: str, tokens: float, max_wait: timedelta
) -> None:
    """Take ``tokens`` of ``scope``, waiting up to ``max_wait`` (application clock); else
    ``RateLimitedError`` with the time they will be there."""
    check_scope(scope)
    if isinstance(tokens, bool) or not isinstance(tokens, int | float) or not tokens > 0:
        raise ValueError(f"tokens must be a positive number, got {tokens!r}")
    started = clock.now()
    while True:
        now = clock.now()
        wait = await backend.take_tokens(scope, float(tokens), now)
        if wait is None:
            raise ConfigError(
                f"unknown rate-limit scope {scope!r}: add it with Jobs.add_rate_limit"
            )
        if wait == 0.0:
            return
        ready_at = now + timedelta(seconds=wait)
        if ready_at - started > max_wait:
            raise RateLimitedError(scope, ready_at)
        await clock.sleep_until(ready_at)


async def drain_rate_limit(
    backend: Backend, clock: ClockHandle, scope: str, retry_after: timedelta
) -> None:
    check_scope(scope)
    if retry_after < timedelta(0):
        raise ValueError("retry_after must not be negative")
    if not await backend.drain_rate_limit(scope, add_clamped(clock.now(), retry_after)):
        raise ConfigError(f"unknown rate-limit scope {scope!r}: add it with Jobs.add_rate_limit")
