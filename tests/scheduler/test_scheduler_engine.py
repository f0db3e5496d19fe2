"""The durable scheduler: due times handed out once, settled by outcome, kept across restarts."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from tandem.scheduler.engine import Scheduler
from tandem.scheduler.schedule import job_schedule, reminder_schedule
from tandem.scheduler.store import Entry, FailurePolicy, Outcome, SchedulerStore, Trigger

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path):
    s = SchedulerStore(str(tmp_path / "scheduler.db"))
    await s.open()
    yield s
    await s.close()


def entry(key="actor/T/1/r", **times) -> Entry:
    return Entry(key=key, kind="actor", target="T", schedule=reminder_schedule(now=NOW, **times))


async def test_a_due_time_is_handed_out_once_while_its_lease_runs(store):
    await store.put(entry(due_time="1s"), overwrite=True)
    assert await store.claim(NOW, timedelta(seconds=30)) == []
    at = NOW + timedelta(seconds=1)
    first = await store.claim(at, timedelta(seconds=30))
    assert [t.entry.key for t in first] == ["actor/T/1/r"]
    assert await store.claim(at + timedelta(seconds=10), timedelta(seconds=30)) == []
    # The engine holding it died: after the lease the same due time is handed out again.
    again = await store.claim(at + timedelta(seconds=31), timedelta(seconds=30))
    assert [(t.due, t.attempt) for t in again] == [(first[0].due, 0)]


async def test_delivered_periodic_entry_steps_to_its_next_due_time(store):
    await store.put(entry(period="R2/PT5S"), overwrite=True)
    (t,) = await store.claim(NOW, timedelta(seconds=30))
    await store.settle(t, Outcome.DELIVERED, NOW)
    stored = await store.get("actor/T/1/r")
    assert stored is not None and stored.due == NOW + timedelta(seconds=5) and stored.fired == 1
    (t,) = await store.claim(NOW + timedelta(seconds=5), timedelta(seconds=30))
    await store.settle(t, Outcome.DELIVERED, NOW + timedelta(seconds=5))
    assert await store.get("actor/T/1/r") is None  # R2: done after two fires


async def test_failures_retry_by_policy_then_count_as_fired(store):
    e = Entry(
        key="job/app/j",
        kind="job",
        target="app",
        schedule=job_schedule(schedule="@every 1m", now=NOW),
        failure=FailurePolicy(interval=timedelta(seconds=2), max_retries=1),
    )
    await store.put(e, overwrite=True)
    due = NOW + timedelta(minutes=1)
    (t,) = await store.claim(due, timedelta(seconds=30))
    await store.settle(t, Outcome.FAILED, due)
    assert await store.claim(due + timedelta(seconds=1), timedelta(seconds=30)) == []
    (t,) = await store.claim(due + timedelta(seconds=2), timedelta(seconds=30))
    assert t.attempt == 1 and t.due == due
    await store.settle(t, Outcome.FAILED, due + timedelta(seconds=2))
    stored = await store.get("job/app/j")
    assert stored is not None
    assert (stored.due, stored.fired, stored.attempts) == (due + timedelta(minutes=1), 1, 0)


async def test_unroutable_keeps_the_retry_budget(store):
    await store.put(entry(), overwrite=True)
    (t,) = await store.claim(NOW, timedelta(seconds=30))
    await store.settle(t, Outcome.UNROUTABLE, NOW)
    (t,) = await store.claim(NOW + timedelta(seconds=1), timedelta(seconds=30))
    assert t.attempt == 0


async def test_cancel_deletes(store):
    await store.put(entry(period="1s"), overwrite=True)
    (t,) = await store.claim(NOW, timedelta(seconds=30))
    await store.settle(t, Outcome.CANCEL, NOW)
    assert await store.get("actor/T/1/r") is None


async def test_a_late_answer_never_touches_an_overwritten_entry(store):
    await store.put(entry(period="1s"), overwrite=True)
    (t,) = await store.claim(NOW, timedelta(seconds=30))
    await store.put(entry(due_time="1h"), overwrite=True)
    await store.settle(t, Outcome.CANCEL, NOW)
    stored = await store.get("actor/T/1/r")
    assert stored is not None and stored.due == NOW + timedelta(hours=1)


async def test_overwrite_off_refuses_an_existing_key(store):
    assert await store.put(entry(), overwrite=False)
    assert not await store.put(entry(due_time="1h"), overwrite=False)


async def test_list_and_delete_by_prefix(store):
    for key in ("actor/T/1/a", "actor/T/1/b", "actor/T/2/a", "job/app/x"):
        await store.put(entry(key=key), overwrite=True)
    assert [s.entry.key for s in await store.entries("actor/T/1/")] == [
        "actor/T/1/a",
        "actor/T/1/b",
    ]
    assert await store.delete_prefix("actor/T/") == 3
    assert [s.entry.key for s in await store.entries()] == ["job/app/x"]


async def test_state_survives_reopening_the_file(tmp_path):
    path = str(tmp_path / "s.db")
    first = SchedulerStore(path)
    await first.open()
    await first.put(entry(period="R3/PT1S", due_time="2s"), overwrite=True)
    (t,) = await first.claim(NOW + timedelta(seconds=2), timedelta(seconds=30))
    await first.settle(t, Outcome.DELIVERED, NOW + timedelta(seconds=2))
    await first.close()
    second = SchedulerStore(path)
    await second.open()
    stored = await second.get("actor/T/1/r")
    await second.close()
    assert stored is not None
    assert (stored.fired, stored.due) == (1, NOW + timedelta(seconds=3))
    assert stored.entry.schedule.repeats == 3


async def test_engine_delivers_each_due_time_once_in_order(store):
    """Real clock: a 200 ms reminder fires 3 times (R3), each due time exactly once."""
    seen: list[Trigger] = []
    done = asyncio.Event()

    async def dispatch(trigger: Trigger) -> Outcome:
        seen.append(trigger)
        if len(seen) == 3:
            done.set()
        return Outcome.DELIVERED

    scheduler = Scheduler(store, dispatch, idle_poll=0.5)
    runner = asyncio.create_task(scheduler.run())
    try:
        now = datetime.now(UTC)
        await scheduler.put(
            Entry(
                key="actor/T/9/r",
                kind="actor",
                target="T",
                schedule=reminder_schedule(period="R3/PT0.2S", now=now),
            )
        )
        await asyncio.wait_for(done.wait(), 10)
        # Give a duplicate every chance to show up: the entry is gone once R3 is spent.
        for _ in range(50):
            if await store.get("actor/T/9/r") is None:
                break
            await asyncio.sleep(0.02)
        assert await store.get("actor/T/9/r") is None
        assert [t.fired for t in seen] == [0, 1, 2]
        dues = [t.due for t in seen]
        assert dues == sorted(set(dues))
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_engine_treats_a_hung_owner_as_a_failure(store):
    attempts: list[int] = []
    twice = asyncio.Event()

    async def dispatch(trigger: Trigger) -> Outcome:
        attempts.append(trigger.attempt)
        if len(attempts) == 2:
            twice.set()
            return Outcome.DELIVERED
        await asyncio.sleep(60)  # an owner that never answers
        return Outcome.DELIVERED

    scheduler = Scheduler(store, dispatch, delivery_timeout=0.2, idle_poll=0.5)
    runner = asyncio.create_task(scheduler.run())
    try:
        await scheduler.put(
            Entry(
                key="job/app/hung",
                kind="job",
                target="app",
                schedule=reminder_schedule(now=datetime.now(UTC)),
                failure=FailurePolicy(interval=timedelta(0), max_retries=3),
            )
        )
        await asyncio.wait_for(twice.wait(), 10)
        assert attempts == [0, 1]
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
