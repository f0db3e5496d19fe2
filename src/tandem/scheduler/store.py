"""The scheduler's durable table: one row per reminder, job or workflow timer.

Invariants the engine relies on (see ``docs/design/scheduler.md``):
- A due time is handed out only under a lease (``claim``), taken in a ``BEGIN IMMEDIATE``
  transaction, so two engines on one file never hand out the same due time while the
  lease runs; an engine that dies mid-delivery loses its lease and the due time is
  handed out again (at-least-once across a crash, exactly once otherwise).
- ``settle`` acts only if the row still has the generation it was claimed under: an
  entry overwritten or deleted while its delivery was in flight is never advanced or
  resurrected by that delivery's late answer.
- The row is the whole state: after a restart the next due time, the fire count and the
  retry count are where the last settled delivery left them.
"""

from __future__ import annotations

import asyncio
import enum
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import isodate

from tandem.blocks.sqlite_files import connect_wal
from tandem.scheduler.schedule import Cron, Period, Schedule

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    first       REAL NOT NULL,
    step        TEXT,
    repeats     INTEGER,
    expires     REAL,
    due         REAL NOT NULL,
    attempt_at  REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    fired       INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    spec        TEXT NOT NULL,
    data        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_attempt_at ON entries (attempt_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What a failed delivery does: retry ``max_retries`` times ``interval`` apart, then
    count the due time as fired and move on. ``max_retries`` None retries forever;
    0 is Dapr's ``drop``. The default is Dapr's: 3 retries, 1 s apart."""

    interval: timedelta = timedelta(seconds=1)
    max_retries: int | None = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """What the owner asked to be reminded of. ``kind`` and ``target`` route the trigger
    (an actor type, an app id, ...); ``spec`` is the request as given, for read-back."""

    key: str
    kind: str
    target: str
    schedule: Schedule
    data: bytes = b""
    spec: dict[str, Any] = field(default_factory=dict)
    failure: FailurePolicy = FailurePolicy()


@dataclass(frozen=True, slots=True)
class Stored:
    entry: Entry
    generation: int
    due: datetime
    fired: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Trigger:
    """One due time handed to a dispatcher."""

    entry: Entry
    generation: int
    due: datetime
    fired: int  # fires before this one
    attempt: int  # 0 for the first try of this due time


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # the owner took it: count it, step to the next due time
    FAILED = "failed"  # the owner refused or errored: the failure policy decides
    CANCEL = "cancel"  # the owner asked to stop (X-Daprremindercancel): delete the entry
    UNROUTABLE = "unroutable"  # no owner right now: try again soon, the retry budget intact


class SchedulerStore:
    """SQLite under ``$TANDEM_HOME``; every call runs on the store's one worker thread."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scheduler-store")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self._conn = connect_wal(self._path, self._busy_timeout)
        self._conn.executescript(_SCHEMA)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("scheduler store is not open")
        return self._conn

    # --- public API (async) ---------------------------------------------------------

    async def put(self, entry: Entry, *, overwrite: bool) -> bool:
        """Store ``entry``; False when it exists and ``overwrite`` is off."""
        return await self._run(self._put, entry, overwrite)

    async def get(self, key: str) -> Stored | None:
        return await self._run(self._get, key)

    async def delete(self, key: str) -> bool:
        return await self._run(self._delete, key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._run(self._delete_prefix, prefix)

    async def entries(self, prefix: str = "") -> list[Stored]:
        return await self._run(self._list, prefix)

    async def next_attempt(self) -> datetime | None:
        """When the earliest row becomes claimable (leases included)."""
        return await self._run(self._next_attempt)

    async def claim(self, now: datetime, lease: timedelta, limit: int = 64) -> list[Trigger]:
        return await self._run(self._claim, now, lease, limit)

    async def settle(self, trigger: Trigger, outcome: Outcome, now: datetime) -> None:
        await self._run(self._settle, trigger, outcome, now)

    # --- worker-thread bodies ----------------------------------------------------------

    def _put(self, entry: Entry, overwrite: bool) -> bool:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            exists = db.execute("SELECT 1 FROM entries WHERE key = ?", (entry.key,)).fetchone()
            if exists and not overwrite:
                db.execute("ROLLBACK")
                return False
            generation = _bump(db)
            s = entry.schedule
            db.execute(
                "INSERT OR REPLACE INTO entries (key, kind, target, generation, first, step,"
                " repeats, expires, due, attempt_at, attempts, fired, lease_until, spec, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, ?, ?)",
                (
                    entry.key,
                    entry.kind,
                    entry.target,
                    generation,
                    s.first.timestamp(),
                    _step_text(s.step),
                    s.repeats,
                    None if s.expires is None else s.expires.timestamp(),
                    s.first.timestamp(),
                    s.first.timestamp(),
                    json.dumps(
                        {
                            "spec": entry.spec,
                            "failure": [
                                entry.failure.interval.total_seconds(),
                                entry.failure.max_retries,
                            ],
                        }
                    ),
                    entry.data,
                ),
            )
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _get(self, key: str) -> Stored | None:
        row = self._db().execute(f"SELECT {_COLUMNS} FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else _stored(row)

    def _delete(self, key: str) -> bool:
        return self._db().execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def _delete_prefix(self, prefix: str) -> int:
        return (
            self._db()
            .execute("DELETE FROM entries WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
            .rowcount
        )

    def _list(self, prefix: str) -> list[Stored]:
        rows = self._db().execute(
            f"SELECT {_COLUMNS} FROM entries WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix),
        )
        return [_stored(r) for r in rows]

    def _next_attempt(self) -> datetime | None:
        row = (
            self._db()
            .execute("SELECT min(max(attempt_at, coalesce(lease_until, 0))) FROM entries")
            .fetchone()
        )
        return None if row[0] is None else datetime.fromtimestamp(row[0], UTC)

    def _claim(self, now: datetime, lease: timedelta, limit: int) -> list[Trigger]:
        db = self._db()
        t = now.timestamp()
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE attempt_at <= ?"
                " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY attempt_at LIMIT ?",
                (t, t, limit),
            ).fetchall()
            out: list[Trigger] = []
            for row in rows:
                stored = _stored(row)
                if stored.entry.schedule.expired(now) and stored.attempts == 0:
                    db.execute("DELETE FROM entries WHERE key = ?", (stored.entry.key,))
                    continue
                db.execute(
                    "UPDATE entries SET lease_until = ? WHERE key = ?",
                    (t + lease.total_seconds(), stored.entry.key),
                )
                out.append(
                    Trigger(
                        stored.entry,
                        stored.generation,
                        stored.due,
                        stored.fired,
                        stored.attempts,
                    )
                )
            db.execute("COMMIT")
            return out
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _settle(self, trigger: Trigger, outcome: Outcome, now: datetime) -> None:
        db = self._db()
        key = trigger.entry.key
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT generation FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != trigger.generation:
                db.execute("COMMIT")  # replaced or deleted while in flight: not ours now
                return
            failure = trigger.entry.failure
            if outcome is Outcome.CANCEL:
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
            elif outcome is Outcome.UNROUTABLE:
                retry_at = now + timedelta(seconds=0.5)
                db.execute(
                    "UPDATE entries SET attempt_at = ?, lease_until = NULL WHERE key = ?",
                    (retry_at.timestamp(), key),
                )
            elif outcome is Outcome.FAILED and (
                failure.max_retries is None or trigger.attempt < failure.max_retries
            ):
                db.execute(
                    "UPDATE entries SET attempt_at = ?, attempts = attempts + 1,"
                    " lease_until = NULL WHERE key = ?",
                    ((now + failure.interval).timestamp(), key),
                )
            else:  # delivered, or failed past its retries: this due time is spent
                fired = trigger.fired + 1
                nxt = trigger.entry.schedule.next_due(trigger.due, fired, now)
                if nxt is None:
                    db.execute("DELETE FROM entries WHERE key = ?", (key,))
                else:
                    db.execute(
                        "UPDATE entries SET due = ?, attempt_at = ?, attempts = 0, fired = ?,"
                        " lease_until = NULL WHERE key = ?",
                        (nxt.timestamp(), nxt.timestamp(), fired, key),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


_COLUMNS = (
    "key, kind, target, generation, first, step, repeats, expires, due, attempts, fired, spec, data"
)


def _bump(db: sqlite3.Connection) -> int:
    """Generations come from one counter, so a key deleted and re-created never reuses one."""
    db.execute(
        "INSERT INTO counters (name, value) VALUES ('generation', 1)"
        " ON CONFLICT (name) DO UPDATE SET value = value + 1"
    )
    value: int = db.execute("SELECT value FROM counters WHERE name = 'generation'").fetchone()[0]
    return value


def _step_text(step: Period | Cron | None) -> str | None:
    if step is None:
        return None
    if isinstance(step, Cron):
        return "cron:" + step.expression
    if isinstance(step, timedelta):
        return f"seconds:{step.total_seconds()!r}"
    return "iso:" + isodate.duration_isoformat(step)


def _step_value(text: str | None) -> Period | Cron | None:
    if text is None:
        return None
    kind, _, value = text.partition(":")
    if kind == "cron":
        return Cron(value)
    if kind == "seconds":
        return timedelta(seconds=float(value))
    parsed: Period = isodate.parse_duration(value)
    return parsed


def _stored(row: tuple[Any, ...]) -> Stored:
    (
        key,
        kind,
        target,
        generation,
        first,
        step,
        repeats,
        expires,
        due,
        attempts,
        fired,
        spec,
        data,
    ) = row
    extra = json.loads(spec)
    interval, max_retries = extra["failure"]
    schedule = Schedule(
        first=datetime.fromtimestamp(first, UTC),
        step=_step_value(step),
        repeats=repeats,
        expires=None if expires is None else datetime.fromtimestamp(expires, UTC),
    )
    entry = Entry(
        key=key,
        kind=kind,
        target=target,
        schedule=schedule,
        data=bytes(data),
        spec=extra["spec"],
        failure=FailurePolicy(timedelta(seconds=interval), max_retries),
    )
    return Stored(entry, generation, datetime.fromtimestamp(due, UTC), fired, attempts)
