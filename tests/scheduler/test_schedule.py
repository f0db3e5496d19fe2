"""The time grammar of reminders and jobs, as a user writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tandem.scheduler.schedule import (
    Cron,
    ScheduleError,
    job_schedule,
    reminder_schedule,
)

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def fires(schedule, now_after=None, limit=20):
    """Every due time of a schedule fired on time (``now`` = the due time itself)."""
    out = [schedule.first]
    fired = 1
    while len(out) < limit:
        nxt = schedule.next_due(out[-1], fired, out[-1])
        if nxt is None:
            break
        out.append(nxt)
        fired += 1
    return out


@pytest.mark.parametrize(
    ("due_time", "expected"),
    [
        ("", NOW),
        ("0", NOW),
        ("0h0m9s0ms", NOW + timedelta(seconds=9)),
        ("1m30s", NOW + timedelta(seconds=90)),
        ("PT2H30M", NOW + timedelta(hours=2, minutes=30)),
        ("2030-10-02T15:00:00Z", datetime(2030, 10, 2, 15, tzinfo=UTC)),
        ("2030-10-02T17:00:00+02:00", datetime(2030, 10, 2, 15, tzinfo=UTC)),
    ],
)
def test_due_time_forms(due_time, expected):
    assert reminder_schedule(due_time=due_time, now=NOW).first == expected


def test_no_period_fires_once():
    assert fires(reminder_schedule(due_time="5s", now=NOW)) == [NOW + timedelta(seconds=5)]


def test_go_period_repeats_until_deleted():
    got = fires(reminder_schedule(due_time="1s", period="2s", now=NOW), limit=4)
    assert got == [NOW + timedelta(seconds=s) for s in (1, 3, 5, 7)]


def test_iso_period_with_repetitions_fires_n_times():
    got = fires(reminder_schedule(period="R10/PT3S", now=NOW))
    assert len(got) == 10
    assert got[-1] == NOW + timedelta(seconds=27)


def test_ttl_and_repetitions_stop_at_whichever_comes_first():
    # Dapr's documented example: first after 10 s, every 3 s for 10 s, at most 4 times.
    got = fires(reminder_schedule(due_time="10s", period="R4/PT3S", ttl="10s", now=NOW))
    assert got == [NOW + timedelta(seconds=s) for s in (10, 13, 16, 19)]
    got = fires(reminder_schedule(due_time="10s", period="R10/PT3S", ttl="7s", now=NOW))
    assert got == [NOW + timedelta(seconds=s) for s in (10, 13, 16)]


def test_calendar_period_steps_by_month():
    s = reminder_schedule(due_time="2027-01-31T00:00:00Z", period="P1M", now=NOW)
    assert fires(s, limit=2)[1].month == 2


def test_missed_due_times_collapse_into_one_fire():
    s = reminder_schedule(period="1s", now=NOW)
    later = NOW + timedelta(seconds=100.5)
    assert s.next_due(NOW, 1, later) == NOW + timedelta(seconds=101)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"due_time": "tomorrow"}, "dueTime"),
        ({"due_time": "2030-10-02T15:00:00"}, "dueTime"),
        ({"period": "R0/PT1S"}, "period"),
        ({"period": "0s"}, "period"),
        ({"period": "-5s"}, "period"),
        ({"period": "PTXS"}, "period"),
        ({"due_time": "-1s"}, "dueTime"),
        ({"period": "1s", "ttl": "2020-01-01T00:00:00Z"}, "ttl"),
    ],
)
def test_bad_reminder_times_name_their_field(fields, field):
    with pytest.raises(ScheduleError) as err:
        reminder_schedule(now=NOW, **fields)
    assert err.value.field == field


def test_job_cron_has_seconds_first():
    s = job_schedule(schedule="*/10 * * * * *", now=NOW)
    assert fires(s, limit=3) == [NOW + timedelta(seconds=s) for s in (10, 20, 30)]


def test_job_every_and_repeats():
    s = job_schedule(schedule="@every 1m", repeats=3, now=NOW)
    assert fires(s) == [NOW + timedelta(minutes=m) for m in (1, 2, 3)]


def test_job_alias_and_due_time_first():
    s = job_schedule(schedule="@hourly", due_time="30s", now=NOW)
    got = fires(s, limit=2)
    assert got == [NOW + timedelta(seconds=30), NOW + timedelta(hours=1)]
    assert isinstance(s.step, Cron)


def test_job_ttl_counts_from_creation():
    s = job_schedule(schedule="@every 10s", ttl="35s", now=NOW)
    assert len(fires(s)) == 3


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "schedule"),
        ({"schedule": "* * * * *"}, "schedule"),  # 5 fields: Dapr's cron has seconds
        ({"schedule": "61 * * * * *"}, "schedule"),
        ({"schedule": "@every soon"}, "schedule"),
        ({"schedule": "@every 1s", "repeats": -1}, "repeats"),
    ],
)
def test_bad_job_times_name_their_field(fields, field):
    with pytest.raises(ScheduleError) as err:
        job_schedule(now=NOW, **fields)
    assert err.value.field == field
