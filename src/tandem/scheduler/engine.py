"""The scheduler's loop: sleep until the next due time, hand it out, settle the answer.

One engine runs per store (the control plane's). It knows nothing about actors, jobs or
workflows: a ``Dispatch`` callable routes each ``Trigger`` by its entry's ``kind`` and
``target`` and answers an ``Outcome``. Deliveries run concurrently (bounded), each under
a lease longer than ``delivery_timeout``, so a slow owner never holds up other entries and
a hung one cannot keep its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from tandem.scheduler.store import Entry, Outcome, SchedulerStore, Stored, Trigger

log = logging.getLogger(__name__)

Dispatch = Callable[[Trigger], Awaitable[Outcome]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        store: SchedulerStore,
        dispatch: Dispatch,
        *,
        clock: Clock = utc_now,
        delivery_timeout: float = 30.0,
        max_in_flight: int = 256,
        idle_poll: float = 5.0,
    ) -> None:
        self._store = store
        self._dispatch = dispatch
        self._clock = clock
        self._timeout = delivery_timeout
        # The lease outlives the delivery timeout, so a row is never handed out twice
        # while its first delivery may still succeed.
        self._lease = timedelta(seconds=delivery_timeout + 5.0)
        self._slots = asyncio.Semaphore(max_in_flight)
        # Another process may add rows to a shared file; poll now and then regardless.
        self._idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the API owners use ------------------------------------------------------------

    async def put(self, entry: Entry, *, overwrite: bool = True) -> bool:
        stored = await self._store.put(entry, overwrite=overwrite)
        self._wake.set()
        return stored

    async def get(self, key: str) -> Stored | None:
        return await self._store.get(key)

    async def delete(self, key: str) -> bool:
        return await self._store.delete(key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._store.delete_prefix(prefix)

    async def entries(self, prefix: str = "") -> list[Stored]:
        return await self._store.entries(prefix)

    def poke(self) -> None:
        """Look for due work now (e.g. an owner just connected and may take its backlog)."""
        self._wake.set()

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                now = self._clock()
                for trigger in await self._store.claim(now, self._lease):
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver(trigger))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await self._sleep_until_due()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sleep_until_due(self) -> None:
        nxt = await self._store.next_attempt()
        delay = self._idle_poll
        if nxt is not None:
            delay = min(delay, max(0.0, (nxt - self._clock()).total_seconds()))
        if delay <= 0:
            return
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
        # races with the event being set, and the loop would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _deliver(self, trigger: Trigger) -> None:
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    outcome = await self._dispatch(trigger)
            except TimeoutError:
                log.warning("delivery of %s timed out", trigger.entry.key)
                outcome = Outcome.FAILED
            except Exception:
                log.exception("delivery of %s failed", trigger.entry.key)
                outcome = Outcome.FAILED
            await self._store.settle(trigger, outcome, self._clock())
            self._wake.set()
        finally:
            self._slots.release()
