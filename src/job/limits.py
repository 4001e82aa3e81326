"""The limits of what `job` stores: times, texts and job configs, checked in one place.

Every value that reaches the database from user code passes through here first, so a bad
value fails at the call that produced it (a spawn, an outcome) with a typed error and writes
nothing, instead of failing later inside a statement shared with other jobs.

* **Times** must be timezone-aware and lie within ``[MIN_TIME, MAX_TIME]`` (UTC). PostgreSQL
  could store a wider range, but Python cannot read it back: a row due in the year 10000 would
  fail every query that touched it. Arithmetic that would leave the range is clamped (retry
  backoff) or rejected (``RescheduleIn`` with an absurd delay fails its attempt).
* **Texts** a runner controls (error messages, ``RetryLater`` reasons, exception type names)
  are made storable: NUL and lone surrogates are replaced (PostgreSQL's text and JSON types
  refuse them) and the length is bounded by ``MAX_ERROR_CHARS``.
* **Unique keys** are ``str`` of at most ``MAX_UNIQUE_KEY_CHARS`` characters, without NUL.
* **Configs** must serialize to JSON that PostgreSQL accepts and that validates again as the
  same model: a ``NaN`` or ``inf`` float (which JSON cannot hold; pydantic writes ``null``) and
  a NUL character in a string are refused with ``JobConfigError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from job.errors import JobConfigError, ScheduleError

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_PRIORITY",
    "MAX_TIME",
    "MAX_UNIQUE_KEY_CHARS",
    "MIN_PRIORITY",
    "MIN_TIME",
    "add_clamped",
    "check_config_json",
    "check_time",
    "storable_text",
]

#: The earliest time a job may be scheduled at (UTC).
MIN_TIME = datetime(1, 1, 2, tzinfo=UTC)
#: The latest time a job may be scheduled at (UTC): a day short of Python's maximum, so any
#: UTC offset applied on the way in or out stays representable.
MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC)
#: Longest error text stored per failed attempt; longer texts are cut, with a note.
MAX_ERROR_CHARS = 4000
#: Longest ``spawn_unique`` key (it is indexed; PostgreSQL's B-tree entries are bounded).
MAX_UNIQUE_KEY_CHARS = 512

# A JSON "\u0000" escape that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_time(value: datetime, what: str) -> datetime:
    """``value`` as UTC if it is aware and within the stored range, else ``ScheduleError``."""
    if not isinstance(value, datetime):
        raise ScheduleError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(f"{what} must be a timezone-aware datetime, got {value!r}")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not MIN_TIME <= utc <= MAX_TIME:
        raise ScheduleError(
            f"{what} ({value.isoformat()}) is outside the range jobs can be scheduled in:"
            f" {MIN_TIME.isoformat()} to {MAX_TIME.isoformat()}"
        )
    return utc


def add_clamped(start: datetime, delta: timedelta) -> datetime:
    """``start + delta``, clamped to ``[MIN_TIME, MAX_TIME]`` instead of overflowing."""
    try:
        result = start + delta
    except OverflowError:
        return MAX_TIME if delta > timedelta(0) else MIN_TIME
    return min(max(result, MIN_TIME), MAX_TIME)


def storable_text(text: object, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD and cut to ``limit`` chars.

    Not a ``str`` (a careless ``RetryLater(None)``)? Its ``repr`` is stored instead."""
    if not isinstance(text, str):
        try:
            text = repr(text)
        except Exception:
            text = f"<unprintable {type(text).__name__}>"
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit]}... ({cut} more characters)"
    return text


#: Job priorities: 0 is claimed first, 9 last (Oban's convention).
MIN_PRIORITY, MAX_PRIORITY = 0, 9


def check_priority(value: object) -> int:
    """A job priority: an int from 0 (first) to 9 (last), else ``JobConfigError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobConfigError(f"priority must be an int from 0 to 9, got {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise JobConfigError(f"priority must be from 0 (first) to 9 (last), got {value}")
    return value


#: Longest ``by`` / ``reason`` an operator action records (``Jobs.cancel``, ``Jobs.retry``).
MAX_LABEL_CHARS = 1000


def check_label(value: object, what: str) -> str:
    """An operator action's ``by`` / ``reason``: a ``str`` (else ``TypeError``), made
    storable (NUL and lone surrogates replaced, cut to ``MAX_LABEL_CHARS``)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return storable_text(value, limit=MAX_LABEL_CHARS)


def check_config_json(job_type: str, config_json: str, config: Any) -> None:
    """Refuse a serialized config the database cannot store or the runner would misread."""
    if "\\u0000" in config_json and _JSON_NUL.search(config_json):
        raise JobConfigError(
            f"config for {job_type!r} contains a NUL character (\\x00), which PostgreSQL"
            " cannot store"
        )
    # pydantic writes NaN and +/-inf as JSON null: the job would run with a different value,
    # or fail to validate at run time. Only a config with a null in it needs the scan.
    if "null" in config_json and _has_non_finite(config):
        raise JobConfigError(
            f"config for {job_type!r} contains NaN or infinity, which JSON cannot hold"
        )


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if hasattr(value, "__pydantic_fields__"):
        return _has_non_finite(value.__dict__)
    if isinstance(value, Mapping):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_non_finite(v) for v in value)
    return False
