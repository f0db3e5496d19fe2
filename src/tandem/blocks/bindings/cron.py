"""``bindings.cron`` (input): an event on every tick of ``schedule``.

The schedule grammar is the scheduler's (6 fields with seconds, ``@every``, ``@daily``...);
like Dapr, a 5-field expression has an implied second 0 and a ``CRON_TZ=<zone>`` prefix
evaluates it in that zone. ``@every`` counts from the binding's start. A tick the app
refuses is not replayed: the next one comes on time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tandem.blocks.bindings.binding import EventHandler, InputEvent
from tandem.blocks.component_metadata import ComponentConfigError, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.scheduler.schedule import Cron, Period, ScheduleError, parse_cron


@dataclass(frozen=True, slots=True)
class CronSchedule:
    step: Period | Cron
    zone: ZoneInfo | None = None

    def next_after(self, instant: datetime) -> datetime:
        if isinstance(self.step, Cron):
            local = instant.astimezone(self.zone) if self.zone else instant
            return self.step.next_after(local).astimezone(UTC)
        return instant + self.step


def parse_schedule(text: str) -> CronSchedule:
    """Raises ScheduleError naming ``schedule``."""
    text = text.strip()
    zone = None
    if text.startswith(("CRON_TZ=", "TZ=")):
        head, _, text = text.partition(" ")
        try:
            zone = ZoneInfo(head.split("=", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError("schedule", f"unknown time zone in {head!r}") from None
    if not text.startswith("@") and len(text.split()) == 5:
        text = "0 " + text
    return CronSchedule(parse_cron("schedule", text), zone)


class CronBinding:
    def __init__(self, schedule: CronSchedule, *, clock: type[datetime] = datetime) -> None:
        self._schedule = schedule
        self._clock = clock

    async def read(self, handler: EventHandler) -> None:
        due = self._schedule.next_after(self._clock.now(UTC))
        while True:
            await asyncio.sleep(max(0.0, (due - self._clock.now(UTC)).total_seconds()))
            now = self._clock.now(UTC)
            zone = str(self._schedule.zone) if self._schedule.zone else "UTC"
            await handler(InputEvent(b"", {"timeZone": zone, "readTimeUTC": now.isoformat()}))
            due = self._schedule.next_after(due)
            if due <= now:  # ticks missed while the app was slow are skipped, not queued up
                due = self._schedule.next_after(now)

    async def close(self) -> None:
        return None


def create(spec: ComponentSpec, ctx: ComponentContext) -> CronBinding:
    text = lookup(spec.metadata, "schedule")
    if not text:
        raise ComponentConfigError(f"binding {spec.name}: metadata schedule is required")
    try:
        return CronBinding(parse_schedule(text))
    except ScheduleError as exc:
        raise ComponentConfigError(f"binding {spec.name}: {exc}") from None
