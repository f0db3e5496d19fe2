"""When a scheduled thing is due: the time grammar of actor reminders and of jobs.

One model serves actor reminders (``dueTime``/``period``/``ttl``), workflow timers (a
single instant) and the Jobs API (``schedule``/``repeats``/``dueTime``/``ttl``): a first due
time, an optional way to step to the next one (a fixed or calendar period, or a cron
expression), an optional count and an optional expiry. Everything here is pure: the
caller passes ``now``.

Missed due times (the scheduler was down) are not replayed one by one: the first step
after an outage fires once and then jumps to the next due time in the future, as cron
does. Each fire counts against ``repeats``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import isodate
from croniter import croniter

from tandem.resources.durations import parse_duration


class ScheduleError(ValueError):
    """A time field the user wrote is invalid; ``field`` names it (``dueTime``, ``period``...)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


# A period: a timedelta, or an ISO 8601 duration with months/years (isodate.Duration),
# which only has a meaning relative to a date.
Period: TypeAlias = timedelta | isodate.Duration

_REPEATS = re.compile(r"^R(\d+)/(.+)$")
_CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


@dataclass(frozen=True, slots=True)
class Cron:
    """A 6-field cron expression (``sec min hour dom month dow``) or an ``@daily``-style alias."""

    expression: str

    def next_after(self, instant: datetime) -> datetime:
        aliased = self.expression in _CRON_ALIASES
        it = croniter(self.expression, instant, second_at_beginning=not aliased)
        nxt: datetime = it.get_next(datetime)
        return nxt


@dataclass(frozen=True, slots=True)
class Schedule:
    """``first`` due time; then every ``step`` until ``repeats`` fires or ``expires``."""

    first: datetime
    step: Period | Cron | None = None
    repeats: int | None = None
    expires: datetime | None = None

    def next_due(self, due: datetime, fired: int, now: datetime) -> datetime | None:
        """The due time after a fire at ``due`` (``fired`` counts it), or None when done.

        Steps from ``due`` (not from ``now``) so a periodic schedule does not drift, but
        never returns a time at or before ``now``: missed due times collapse into one fire.
        """
        if self.step is None:
            return None
        if self.repeats is not None and fired >= self.repeats:
            return None
        nxt = _advance(due, self.step)
        if nxt <= now:
            nxt = _skip_past(due, self.step, now)
        if self.expires is not None and nxt > self.expires:
            return None
        return nxt

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now > self.expires


def _advance(instant: datetime, step: Period | Cron) -> datetime:
    if isinstance(step, Cron):
        return step.next_after(instant)
    nxt: datetime = instant + step
    return nxt


def _skip_past(due: datetime, step: Period | Cron, now: datetime) -> datetime:
    if isinstance(step, Cron):
        return step.next_after(now)
    if isinstance(step, timedelta):
        # Whole periods since ``due``, plus one: the first anchored due time after now.
        periods = (now - due) // step + 1
        nxt: datetime = due + step * periods
        return nxt
    nxt = due
    while nxt <= now:  # calendar steps (months, years) are at least a day: few turns
        nxt = nxt + step
    return nxt


# --- parsing the user's text ------------------------------------------------------------


def parse_instant_or_delay(field: str, text: str, base: datetime) -> datetime:
    """RFC 3339 instant, Go duration or ISO 8601 duration (relative to ``base``)."""
    text = text.strip()
    if not text:
        return base
    if text.startswith(("P", "-P", "+P")):
        return base + _positive(field, _iso_duration(field, text), allow_zero=True)
    try:
        return base + _positive(field, parse_duration(text), allow_zero=True)
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ScheduleError(
            field,
            f"{text!r} is neither an RFC 3339 time, a duration like 1m30s nor an ISO 8601 "
            "duration like PT1M30S",
        ) from None
    if instant.tzinfo is None:
        raise ScheduleError(field, f"{text!r} has no time zone (add Z or an offset)")
    return instant.astimezone(UTC)


def parse_period(field: str, text: str) -> tuple[Period, int | None]:
    """A Go duration or ISO 8601 duration, optionally ``R<n>/``-prefixed: (period, repeats)."""
    text = text.strip()
    repeats: int | None = None
    match = _REPEATS.match(text)
    if match:
        repeats = int(match.group(1))
        if repeats <= 0:
            raise ScheduleError(field, f"{text!r}: the repetition count must be above 0")
        text = match.group(2)
    if text.startswith("P"):
        period: Period = _iso_duration(field, text)
    else:
        try:
            period = parse_duration(text)
        except ValueError as exc:
            raise ScheduleError(field, str(exc)) from None
    return _positive(field, period, allow_zero=False), repeats


def parse_cron(field: str, text: str) -> Period | Cron:
    """A job ``schedule``: 6-field cron, an ``@daily``-style alias or ``@every <duration>``."""
    text = text.strip()
    if text.startswith("@every"):
        rest = text[len("@every") :].strip()
        try:
            return _positive(field, parse_duration(rest), allow_zero=False)
        except ValueError as exc:
            raise ScheduleError(field, f"{text!r}: {exc}") from None
    if text in _CRON_ALIASES:
        return Cron(text)
    if len(text.split()) != 6 or not croniter.is_valid(text, second_at_beginning=True):
        raise ScheduleError(
            field,
            f"{text!r} is not a schedule: use 6 cron fields (second minute hour day-of-month "
            "month day-of-week), @every <duration>, or @hourly/@daily/@weekly/@monthly/@yearly",
        )
    return Cron(text)


def _iso_duration(field: str, text: str) -> Period:
    try:
        value = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError):
        raise ScheduleError(field, f"{text!r} is not an ISO 8601 duration") from None
    return value  # type: ignore[no-any-return]


def _positive(field: str, period: Period, *, allow_zero: bool) -> Any:
    probe = datetime(2000, 1, 1, tzinfo=UTC)
    delta = (probe + period) - probe
    if delta < timedelta(0) or (not allow_zero and delta == timedelta(0)):
        raise ScheduleError(field, "must be above 0" if not allow_zero else "must not be negative")
    return period


# --- the two user-facing shapes ------------------------------------------------------------


def reminder_schedule(
    *, due_time: str = "", period: str = "", ttl: str = "", now: datetime
) -> Schedule:
    """An actor reminder's (or timer's) fields, as the actors API takes them.

    ``ttl`` as a duration counts from the first due time; with no period it is ignored,
    as in Dapr (a one-shot reminder simply fires once).
    """
    first = parse_instant_or_delay("dueTime", due_time, now)
    step: Period | None = None
    repeats: int | None = None
    if period.strip():
        step, repeats = parse_period("period", period)
    expires = None
    if ttl.strip() and step is not None:
        expires = parse_instant_or_delay("ttl", ttl, first)
        if expires < first:
            raise ScheduleError("ttl", "expires before the first due time")
    return Schedule(first=first, step=step, repeats=repeats, expires=expires)


def job_schedule(
    *,
    schedule: str = "",
    repeats: int = 0,
    due_time: str = "",
    ttl: str = "",
    now: datetime,
) -> Schedule:
    """A job of the Jobs API: at least one of ``schedule`` and ``dueTime``.

    Without ``dueTime`` the first fire is the schedule's first time after ``now``;
    ``repeats`` 0 means unlimited; ``ttl`` as a duration counts from creation.
    """
    if not schedule.strip() and not due_time.strip():
        raise ScheduleError("schedule", "a job needs a schedule, a dueTime, or both")
    if repeats < 0:
        raise ScheduleError("repeats", "must not be negative")
    step = parse_cron("schedule", schedule) if schedule.strip() else None
    if due_time.strip():
        first = parse_instant_or_delay("dueTime", due_time, now)
    else:
        assert step is not None
        first = _advance(now, step)
    expires = parse_instant_or_delay("ttl", ttl, now) if ttl.strip() else None
    if expires is not None and expires < first:
        raise ScheduleError("ttl", "expires before the first due time")
    return Schedule(first=first, step=step, repeats=repeats or None, expires=expires)
