"""``pubsub.sqlite``: the embedded, durable default broker — one SQLite file, no server.

Every sidecar on a machine opens the same file (``$TANDEM_HOME/pubsub.db``), so a message
published by one sidecar reaches the subscribers of the others.

Model (Redis Streams' model, in three tables):
- ``messages``: an append-only log; ids come from AUTOINCREMENT, so they never repeat.
- ``groups``: one cursor per (topic, consumer group): the last message id handed out.
  A new group starts at the beginning of what is retained.
- ``pending``: messages handed out and not yet acknowledged, with the owner (host, pid,
  instance token) and a lease.

Claiming is one ``BEGIN IMMEDIATE`` transaction: first take back pending messages whose
lease expired or whose owner process is gone (same host, pid not alive), then advance the
cursor over new messages. Each message of a group is thus held by one consumer at a time,
and is delivered again until acknowledged (at-least-once). A live owner renews the leases
of what it holds, so a slow handler is not raced by another consumer; a dead owner's
messages go back at once (pid check) or when the lease runs out (other hosts, pid reuse).

Pollers wake at once for messages published in the same process and otherwise poll with
a short adaptive interval (a cheap read first; the write lock only when there is work).
All SQLite work runs on one worker thread per component. Publishes and acks that arrive
together share one transaction and one thread hop (group commit,
``tandem.blocks.coalesce``); each caller is answered once its own row is committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from tandem.blocks.coalesce import Coalescer
from tandem.blocks.component_metadata import as_int, as_seconds, lookup
from tandem.blocks.pubsub._inflight import InFlight
from tandem.blocks.pubsub.broker import (
    Feature,
    Handler,
    Message,
    Outcome,
    PublishEntry,
    SubscribeOptions,
)
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.sqlite_files import connect_wal
from tandem.procs import pid_alive

_T = TypeVar("_T")
POLL_MIN = 0.005
OWNER_CHECK_EVERY = 1.0
CLEANUP_EVERY = 10.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "topic TEXT NOT NULL, data BLOB NOT NULL, metadata TEXT NOT NULL, published REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS messages_topic ON messages(topic)",
    "CREATE INDEX IF NOT EXISTS messages_published ON messages(published)",
    "CREATE TABLE IF NOT EXISTS groups (topic TEXT NOT NULL, grp TEXT NOT NULL, "
    "cursor INTEGER NOT NULL, PRIMARY KEY (topic, grp)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS pending (topic TEXT NOT NULL, grp TEXT NOT NULL, "
    "msg_id INTEGER NOT NULL, owner TEXT NOT NULL, owner_host TEXT NOT NULL, "
    "owner_pid INTEGER NOT NULL, lease_until REAL NOT NULL, deliveries INTEGER NOT NULL, "
    "PRIMARY KEY (topic, grp, msg_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS pending_lease ON pending(topic, grp, lease_until)",
)


def create(spec: ComponentSpec, ctx: ComponentContext) -> SqlitePubSub:
    md = spec.metadata
    return SqlitePubSub(
        lookup(md, "connectionString", "databaseName") or str(ctx.home / "pubsub.db"),
        group=lookup(md, "consumerID") or ctx.app_id,
        concurrency=as_int("concurrency", lookup(md, "concurrency"), 10),
        visibility_timeout=as_seconds(
            "visibilityTimeout", lookup(md, "visibilityTimeout", "processingTimeout"), 60.0
        ),
        redeliver_delay=as_seconds("redeliverInterval", lookup(md, "redeliverInterval"), 1.0),
        poll_max=as_seconds("pollInterval", lookup(md, "pollInterval"), 0.1),
        retention=as_seconds("maxAge", lookup(md, "maxAge", "messageRetention"), 86400.0),
        busy_timeout=as_seconds("busyTimeout", lookup(md, "busyTimeout"), 10.0),
        name=spec.name,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Owner:
    token: str
    host: str
    pid: int


class _Db:
    """The SQL side; every method runs on the component's worker thread."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def conn(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = connect_wal(self._path, self._busy_timeout)
        try:
            # NORMAL in WAL mode: a committed publish survives the crash of any process.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._write(conn, lambda: [conn.execute(sql) for sql in _SCHEMA])
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _write(conn: sqlite3.Connection, work: Callable[[], _T]) -> _T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def publish(self, rows: Sequence[tuple[str, bytes, Mapping[str, str]]]) -> None:
        """Store ``(topic, data, metadata)`` rows in one transaction (all or none)."""
        conn = self.conn()
        now = time.time()
        params = [(topic, data, orjson.dumps(dict(md)).decode(), now) for topic, data, md in rows]
        self._write(
            conn,
            lambda: conn.executemany(
                "INSERT INTO messages (topic, data, metadata, published) VALUES (?, ?, ?, ?)",
                params,
            ),
        )

    def ensure_group(self, topic: str, grp: str) -> None:
        conn = self.conn()
        self._write(
            conn,
            lambda: conn.execute(
                "INSERT OR IGNORE INTO groups (topic, grp, cursor) VALUES (?, ?, 0)", (topic, grp)
            ),
        )

    def other_owners(self, topic: str, grp: str, me: _Owner) -> list[tuple[str, int]]:
        rows = self.conn().execute(
            "SELECT DISTINCT owner_host, owner_pid FROM pending "
            "WHERE topic = ? AND grp = ? AND owner != ?",
            (topic, grp, me.token),
        )
        return [(h, int(p)) for h, p in rows]

    def claim(
        self, topic: str, grp: str, me: _Owner, n: int, lease: float, dead: Sequence[int]
    ) -> list[Message]:
        conn = self.conn()
        now = time.time()
        dead_marks = ",".join("?" * len(dead))
        dead_clause = f" OR (owner_host = ? AND owner_pid IN ({dead_marks}))" if dead else ""
        dead_args: tuple[Any, ...] = (me.host, *dead) if dead else ()
        # A cheap read first: the write lock only when there is something to take.
        (work,) = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE topic = ? AND id > "
            "(SELECT cursor FROM groups WHERE topic = ? AND grp = ?)) "
            "OR EXISTS (SELECT 1 FROM pending WHERE topic = ? AND grp = ? "
            f"AND (lease_until <= ?{dead_clause}))",
            (topic, topic, grp, topic, grp, now, *dead_args),
        ).fetchone()
        if not work:
            return []

        def take() -> list[tuple[int, int]]:
            taken = conn.execute(
                "UPDATE pending SET owner = ?, owner_host = ?, owner_pid = ?, lease_until = ?, "
                "deliveries = deliveries + 1 WHERE topic = ? AND grp = ? AND msg_id IN "
                "(SELECT msg_id FROM pending WHERE topic = ? AND grp = ? "
                f"AND (lease_until <= ?{dead_clause}) ORDER BY msg_id LIMIT ?) "
                "RETURNING msg_id, deliveries",
                (me.token, me.host, me.pid, now + lease, topic, grp, topic, grp, now)
                + dead_args
                + (n,),
            ).fetchall()
            room = n - len(taken)
            if room > 0:
                (cursor,) = conn.execute(
                    "SELECT cursor FROM groups WHERE topic = ? AND grp = ?", (topic, grp)
                ).fetchone()
                fresh = [
                    int(r[0])
                    for r in conn.execute(
                        "SELECT id FROM messages WHERE topic = ? AND id > ? ORDER BY id LIMIT ?",
                        (topic, cursor, room),
                    )
                ]
                if fresh:
                    conn.executemany(
                        "INSERT INTO pending (topic, grp, msg_id, owner, owner_host, owner_pid, "
                        "lease_until, deliveries) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                        [(topic, grp, i, me.token, me.host, me.pid, now + lease) for i in fresh],
                    )
                    conn.execute(
                        "UPDATE groups SET cursor = ? WHERE topic = ? AND grp = ?",
                        (fresh[-1], topic, grp),
                    )
                    taken.extend((i, 1) for i in fresh)
            return taken

        claimed = self._write(conn, take)
        if not claimed:
            return []
        deliveries = dict(claimed)
        marks = ",".join("?" * len(deliveries))
        rows = conn.execute(
            f"SELECT id, data, metadata FROM messages WHERE id IN ({marks}) ORDER BY id",
            tuple(deliveries),
        ).fetchall()
        out = [
            Message(topic, bytes(data), orjson.loads(md), str(i), deliveries[i] - 1)
            for i, data, md in rows
        ]
        gone = set(deliveries) - {int(r[0]) for r in rows}
        if gone:  # purged by retention while pending: nothing left to deliver
            self._settle(topic, grp, me, sorted(gone), None)
        return out

    def _settle(
        self, topic: str, grp: str, me: _Owner, ids: Sequence[int], lease_until: float | None
    ) -> None:
        """Ack (``lease_until`` None: forget them) or hand back / renew until a time."""
        conn = self.conn()
        marks = ",".join("?" * len(ids))
        if lease_until is None:
            sql = f"DELETE FROM pending WHERE topic = ? AND grp = ? AND msg_id IN ({marks})"
            args: tuple[Any, ...] = (topic, grp, *ids)
        else:
            sql = (
                f"UPDATE pending SET lease_until = ? WHERE topic = ? AND grp = ? "
                f"AND owner = ? AND msg_id IN ({marks})"
            )
            args = (lease_until, topic, grp, me.token, *ids)
        self._write(conn, lambda: conn.execute(sql, args))

    def ack_many(self, acks: Sequence[tuple[str, str, int]]) -> None:
        """Forget the pending ``(topic, group, msg_id)`` rows, in one transaction."""
        conn = self.conn()
        self._write(
            conn,
            lambda: conn.executemany(
                "DELETE FROM pending WHERE topic = ? AND grp = ? AND msg_id = ?", acks
            ),
        )

    def release(self, topic: str, grp: str, me: _Owner, ids: Sequence[int], delay: float) -> None:
        self._settle(topic, grp, me, ids, time.time() + delay)

    def cleanup(self, topic: str, retention: float) -> int:
        """Drop messages every group of ``topic`` is done with, and anything too old."""
        conn = self.conn()

        def purge() -> int:
            done = conn.execute(
                "DELETE FROM messages WHERE topic = ? "
                "AND id <= (SELECT MIN(cursor) FROM groups WHERE topic = ?) "
                "AND id NOT IN (SELECT msg_id FROM pending WHERE topic = ?)",
                (topic, topic, topic),
            ).rowcount
            old = conn.execute(
                "DELETE FROM messages WHERE published < ?", (time.time() - retention,)
            ).rowcount
            return int(done) + int(old)

        return self._write(conn, purge)


class _Subscription:
    def __init__(
        self, broker: SqlitePubSub, topic: str, group: str, handler: Handler, limit: int
    ) -> None:
        self._broker = broker
        self._topic = topic
        self._group = group
        self._me = _Owner(secrets.token_hex(8), socket.gethostname(), os.getpid())
        self._inflight = InFlight(handler, self._settle, limit)
        self._wake = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._poll()),
            asyncio.create_task(self._renew()),
        ]

    def wake(self) -> None:
        self._wake.set()

    async def _poll(self) -> None:
        b = self._broker
        delay = POLL_MIN
        checked = cleaned = time.monotonic()
        while True:
            await self._inflight.wait_free()
            dead: list[int] = []
            if time.monotonic() - checked >= OWNER_CHECK_EVERY:
                checked = time.monotonic()
                owners = await b.call(
                    self._broker.db.other_owners, self._topic, self._group, self._me
                )
                dead = [p for h, p in owners if h == self._me.host and not pid_alive(p)]
            if time.monotonic() - cleaned >= CLEANUP_EVERY:
                cleaned = time.monotonic()
                await b.call(b.db.cleanup, self._topic, b.retention)
            self._wake.clear()
            try:
                msgs = await b.call(
                    b.db.claim,
                    self._topic,
                    self._group,
                    self._me,
                    self._inflight.free,
                    b.visibility_timeout,
                    dead,
                )
            except sqlite3.OperationalError:  # e.g. locked past busyTimeout: try again
                msgs = []
            if msgs:
                for m in msgs:
                    self._inflight.start(m)
                delay = POLL_MIN
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                delay = POLL_MIN
            except TimeoutError:
                delay = min(delay * 2, b.poll_max)

    async def _renew(self) -> None:
        b = self._broker
        every = max(b.visibility_timeout / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            ids = [int(m.id) for m in self._inflight.messages()]
            if ids:
                try:
                    await b.call(
                        b.db.release, self._topic, self._group, self._me, ids, b.visibility_timeout
                    )
                except sqlite3.OperationalError:
                    continue

    async def _settle(self, msg: Message, outcome: Outcome) -> None:
        b = self._broker
        if outcome is Outcome.RETRY:
            await b.call(
                b.db.release, self._topic, self._group, self._me, [int(msg.id)], b.redeliver_delay
            )
        else:
            await b.ack(self._topic, self._group, int(msg.id))

    async def close(self, grace: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        left = await self._inflight.drain(grace)
        if left:  # give them back now, so another consumer need not wait for the lease
            b = self._broker
            await b.call(
                b.db.release, self._topic, self._group, self._me, [int(m.id) for m in left], 0.0
            )
        self._broker.forget(self)


class SqlitePubSub:
    def __init__(
        self,
        path: str,
        *,
        group: str,
        concurrency: int = 10,
        visibility_timeout: float = 60.0,
        redeliver_delay: float = 1.0,
        poll_max: float = 0.1,
        retention: float = 86400.0,
        busy_timeout: float = 10.0,
        name: str = "sqlite",
    ) -> None:
        self.db = _Db(path, busy_timeout)
        self._default_group = group
        self._concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.redeliver_delay = redeliver_delay
        self.poll_max = max(poll_max, POLL_MIN)
        self.retention = retention
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"pubsub-sqlite-{name}")
        self._subs: dict[str, list[_Subscription]] = {}
        self._closed = False
        self._rows: Coalescer[tuple[str, bytes, Mapping[str, str]], None] = Coalescer(self._store)
        self._acks: Coalescer[tuple[str, str, int], None] = Coalescer(self._forget_pending)

    @property
    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.BULK_PUBLISH})  # one transaction per bulk publish

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise RuntimeError("pubsub component is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        await self._rows.submit((topic, data, metadata))

    async def _store(
        self, rows: list[tuple[str, bytes, Mapping[str, str]]]
    ) -> list[BaseException | None]:
        await self.call(self.db.publish, rows)
        for topic in {r[0] for r in rows}:
            self._wake(topic)
        return [None] * len(rows)

    async def ack(self, topic: str, group: str, msg_id: int) -> None:
        await self._acks.submit((topic, group, msg_id))

    async def _forget_pending(self, acks: list[tuple[str, str, int]]) -> list[BaseException | None]:
        await self.call(self.db.ack_many, acks)
        return [None] * len(acks)

    async def bulk_publish(self, topic: str, entries: Sequence[PublishEntry]) -> list[str]:
        # One transaction: all entries are stored or none is.
        await self.call(self.db.publish, [(topic, e.data, e.metadata) for e in entries])
        self._wake(topic)
        return []

    def _wake(self, topic: str) -> None:
        for sub in self._subs.get(topic, ()):
            sub.wake()

    async def subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> _Subscription:
        group = options.group or self._default_group
        await self.call(self.db.ensure_group, topic, group)
        limit = as_int("concurrency", lookup(options.metadata, "concurrency"), self._concurrency)
        sub = _Subscription(self, topic, group, handler, limit)
        self._subs.setdefault(topic, []).append(sub)
        return sub

    def forget(self, sub: _Subscription) -> None:
        for subs in self._subs.values():
            if sub in subs:
                subs.remove(sub)

    async def close(self) -> None:
        if self._closed:
            return
        for subs in list(self._subs.values()):
            for sub in list(subs):
                await sub.close(0)
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.db.close)
        self._executor.shutdown(wait=False)
