"""The cron binding's schedule grammar and its ticks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tandem.blocks.bindings.binding import InputEvent
from tandem.blocks.bindings.cron import CronBinding, parse_schedule
from tandem.scheduler.schedule import ScheduleError

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*/15 * * * * *", T0 + timedelta(seconds=15)),  # six fields, with seconds
        ("*/5 * * * *", T0 + timedelta(minutes=5)),  # five: second 0 implied
        ("@every 90s", T0 + timedelta(seconds=90)),
        ("@daily", datetime(2026, 3, 2, tzinfo=UTC)),
        # Midnight in New York is 05:00 UTC in March (before DST starts on the 8th).
        ("CRON_TZ=America/New_York 0 0 0 * * *", datetime(2026, 3, 2, 5, tzinfo=UTC)),
    ],
)
def test_schedules(text: str, expected: datetime) -> None:
    assert parse_schedule(text).next_after(T0) == expected


@pytest.mark.parametrize(
    "text", ["", "every day", "* * *", "@every -1s", "CRON_TZ=Mars/Base * * * * *"]
)
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


async def test_ticks_keep_coming_after_a_refused_one() -> None:
    events: list[InputEvent] = []
    three = asyncio.Event()

    async def handler(event: InputEvent) -> bool:
        events.append(event)
        if len(events) == 3:
            three.set()
        return len(events) != 1  # the first tick is refused

    task = asyncio.create_task(CronBinding(parse_schedule("@every 0.1s")).read(handler))
    try:
        async with asyncio.timeout(10):
            await three.wait()
    finally:
        task.cancel()
    assert events[0].metadata["timeZone"] == "UTC"
    assert "readTimeUTC" in events[0].metadata
