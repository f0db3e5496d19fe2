"""``state.sqlite``: the embedded default state store — one file, no server.

Concurrency model:
- Writes run on one worker thread owned by the store, reads on another, each over its own
  connection in WAL mode: a read never waits for a write in progress (a 5,000-item bulk
  save, say), and sees only committed data. An in-memory database has one connection, so
  there both share the writer's thread.
- Single-key reads (``get``) run on the event loop itself, over a third connection that
  never waits for a lock: a WAL read of a few rows takes microseconds, the hop to a thread
  and back took more than the read and contended for the GIL (the embedded default's GET
  through the sidecar ran at 40 % of the in-memory store's). When that connection finds
  the file busy (a checkpoint or recovery holds it), the read goes to the reader thread,
  which waits ``busyTimeout`` like every other call.
- Every write is a ``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock *before*
  reading the version it checks, so check-and-set is atomic even between several processes
  sharing the file; ``busyTimeout`` is how long a writer waits for another's lock.
- Etags are integer versions drawn from one counter per table (in the same transaction),
  so a key deleted and re-created never repeats an etag a client may still hold.
- A bulk save or delete is one transaction (:meth:`SqliteStateStore.bulk_write`): an
  item whose check fails is skipped and reported, the others commit together. Single-key
  saves, deletes and reads in flight together are handled the same way (group commit,
  ``tandem.blocks.coalesce``): one thread hop and one transaction for all of them, each
  caller answered once its own write is committed, with its own etag error.
- Expired rows are invisible to every read and check; a periodic task deletes them.
- ``is_json`` flags values that are JSON documents; the query API (compiled to SQL by
  :mod:`.query_sql`) only looks inside those.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tandem.blocks.coalesce import Coalescer
from tandem.blocks.component_metadata import ComponentConfigError, as_seconds, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.sqlite_files import connect_wal
from tandem.blocks.state.query import (
    QueryItem,
    QueryRequest,
    QueryResult,
    json_document,
    next_token,
)
from tandem.blocks.state.query_sql import sqlite_select
from tandem.blocks.state.store import (
    BulkGetItem,
    DeleteRequest,
    ETagMismatch,
    Feature,
    GetRequest,
    GetResponse,
    SetRequest,
    StoreError,
    TransactionOperation,
    parse_version,
)

_T = TypeVar("_T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_BULK_CHUNK = 500  # stay far below SQLite's host-parameter limit


def create(spec: ComponentSpec, ctx: ComponentContext) -> SqliteStateStore:
    md = spec.metadata
    path = lookup(md, "connectionString", "databaseName") or str(ctx.home / "state.db")
    table = lookup(md, "tableName") or "state"
    if not _IDENT.match(table):
        raise ComponentConfigError(f"tableName {table!r} is not a plain SQL identifier")
    return SqliteStateStore(
        path,
        table=table,
        busy_timeout=as_seconds("busyTimeout", lookup(md, "busyTimeout", "timeout"), 5.0),
        cleanup_interval=as_seconds("cleanupInterval", lookup(md, "cleanupInterval"), 3600.0),
        name=spec.name,
    )


class SqliteStateStore:
    def __init__(
        self,
        path: str,
        *,
        table: str = "state",
        busy_timeout: float = 5.0,
        cleanup_interval: float = 3600.0,
        name: str = "sqlite",
    ) -> None:
        self._path = path
        self._table = table
        self._busy_timeout = busy_timeout
        self._cleanup_interval = cleanup_interval
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"state-sqlite-{name}")
        self._conn: sqlite3.Connection | None = None  # opened on the worker thread
        in_memory = path == ":memory:" or "mode=memory" in path
        self._reader = (
            self._executor
            if in_memory
            else ThreadPoolExecutor(1, thread_name_prefix=f"state-sqlite-{name}-read")
        )
        self._read_conn: sqlite3.Connection | None = None  # opened on the reader thread
        # Used on the event loop (opened on the reader thread: opening may wait for a lock).
        self._inline_conn: sqlite3.Connection | None = None
        self._schema_ready = in_memory
        self._cleanup_task: asyncio.Task[None] | None = None
        self._closed = False
        self._gets: Coalescer[str, GetResponse] = Coalescer(self._get_many)
        self._singles: Coalescer[SetRequest | DeleteRequest, None] = Coalescer(self._write_each)

    @property
    def features(self) -> frozenset[Feature]:
        # Dapr's list, plus the query API that this store adds.
        return frozenset(
            {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.KEYS_LIKE, Feature.QUERY_API}
        )

    async def get(self, req: GetRequest) -> GetResponse:
        return await self._gets.submit(req.key)

    async def _get_many(self, keys: list[str]) -> list[GetResponse | BaseException]:
        conn = self._inline_conn
        items = None
        if conn is not None and not self._closed:
            try:
                items = self._read_on(conn, keys)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
        elif self._reader is not self._executor and not self._closed:
            await self._call_reader(self._open_inline)
        if items is None:
            items = await self._call_reader(self._read, keys)
        return [i.response or GetResponse(None) for i in items]

    async def bulk_get(self, reqs: Sequence[GetRequest], parallelism: int) -> list[BulkGetItem]:
        # One indexed query per chunk on the reader thread; parallelism buys nothing here.
        return await self._call_reader(self._read, [r.key for r in reqs])

    async def bulk_write(
        self, ops: Sequence[SetRequest | DeleteRequest]
    ) -> list[StoreError | None]:
        results: list[StoreError | None] = [None] * len(ops)
        valid: list[tuple[int, SetRequest | DeleteRequest]] = []
        for index, op in enumerate(ops):
            try:
                if op.etag is not None:
                    parse_version(op.etag)
            except StoreError as exc:
                results[index] = exc
                continue
            valid.append((index, op))
        for index, error in await self._call(self._apply_each, [op for _, op in valid]):
            results[valid[index][0]] = error
        return results

    async def set(self, req: SetRequest) -> None:
        await self._write_one(req)

    async def delete(self, req: DeleteRequest) -> None:
        await self._write_one(req)

    async def _write_one(self, op: SetRequest | DeleteRequest) -> None:
        if op.etag is not None:  # a malformed etag fails before any lock is taken
            parse_version(op.etag)
        await self._singles.submit(op)

    async def _write_each(
        self, ops: list[SetRequest | DeleteRequest]
    ) -> list[None | BaseException]:
        try:
            failed = dict(await self._call(self._apply_each, ops))
        except Exception:
            if len(ops) == 1:
                raise
            # Something other than an etag check broke the shared transaction: apply them
            # one by one, so that only the call at fault fails.
            out: list[None | BaseException] = []
            for op in ops:
                try:
                    await self._call(self._apply_all, [op])
                except Exception as exc:
                    out.append(exc)
                else:
                    out.append(None)
            return out
        return [failed.get(i) for i in range(len(ops))]

    async def transact(
        self, ops: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        await self._write(ops)

    async def query(self, req: QueryRequest) -> QueryResult:
        return await self._call_reader(self._query, req)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=False)
        if self._reader is not self._executor:
            await loop.run_in_executor(self._reader, self._close_reader)
            self._reader.shutdown(wait=False)

    async def purge_expired(self) -> int:
        """Delete expired rows now; returns how many (the periodic cleanup calls this)."""
        return await self._call(self._purge)

    # -- event-loop side ------------------------------------------------------------------

    async def _write(self, ops: Sequence[TransactionOperation]) -> None:
        # A malformed etag fails before any lock is taken.
        for op in ops:
            if op.etag is not None:
                parse_version(op.etag)
        await self._call(self._apply_all, ops)

    async def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        if self._closed:
            raise RuntimeError("state store is closed")
        if self._cleanup_task is None and self._cleanup_interval > 0:
            self._cleanup_task = asyncio.create_task(self._cleanup_loop())
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _call_reader(self, fn: Callable[..., _T], *args: object) -> _T:
        if not self._schema_ready:
            # The writer creates the table; the reader's connection must find it.
            await self._call(self._connection)
            self._schema_ready = True
        if self._closed:
            raise RuntimeError("state store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, fn, *args)

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                await self._call(self._purge)
            except Exception:  # a locked or missing file must not end the loop
                continue

    # -- worker-thread side ---------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = connect_wal(self._path, self._busy_timeout)
        try:
            t = self._table
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{t}" (key TEXT NOT NULL PRIMARY KEY, '
                "value BLOB NOT NULL, version INTEGER NOT NULL, expires_at REAL, "
                "is_json INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
            )
            columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{t}")')}
            if "is_json" not in columns:  # a table from before the query API
                conn.execute(f'ALTER TABLE "{t}" ADD COLUMN is_json INTEGER NOT NULL DEFAULT 0')
                conn.execute(f'UPDATE "{t}" SET is_json = json_valid(CAST(value AS TEXT))')
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{t}_expires" ON "{t}"(expires_at) '
                "WHERE expires_at IS NOT NULL"
            )
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{t}_meta" '
                "(name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)"
            )
            conn.execute(f"INSERT OR IGNORE INTO \"{t}_meta\" VALUES ('version', 0)")
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _reader_connection(self) -> sqlite3.Connection:
        if self._reader is self._executor:
            return self._connection()
        if self._read_conn is None:
            self._read_conn = connect_wal(self._path, self._busy_timeout)
        return self._read_conn

    def _close_reader(self) -> None:
        for conn in (self._read_conn, self._inline_conn):
            if conn is not None:
                conn.close()
        self._read_conn = self._inline_conn = None

    def _open_inline(self) -> None:
        """Open the event loop's read connection: no busy wait (``timeout=0``), read-only."""
        if self._inline_conn is None:
            conn = sqlite3.connect(
                self._path,
                timeout=0,
                isolation_level=None,
                check_same_thread=False,
                uri=self._path.startswith("file:"),
            )
            conn.execute("PRAGMA query_only = ON")
            self._inline_conn = conn

    def _read(self, keys: list[str]) -> list[BulkGetItem]:
        return self._read_on(self._reader_connection(), keys)

    def _read_on(self, conn: sqlite3.Connection, keys: list[str]) -> list[BulkGetItem]:
        now = time.time()
        found: dict[str, tuple[bytes, int]] = {}
        for start in range(0, len(keys), _BULK_CHUNK):
            chunk = keys[start : start + _BULK_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f'SELECT key, value, version FROM "{self._table}" WHERE key IN ({marks}) '
                "AND (expires_at IS NULL OR expires_at > ?)",
                (*chunk, now),
            )
            for key, value, version in rows:
                found[key] = (bytes(value), version)
        items = []
        for key in keys:
            hit = found.get(key)
            resp = GetResponse(None) if hit is None else GetResponse(hit[0], str(hit[1]))
            items.append(BulkGetItem(key, resp))
        return items

    def _apply_all(self, ops: Sequence[TransactionOperation]) -> None:
        conn = self._connection()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                self._apply(conn, op, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # BEGIN itself may have failed (lock busy past timeout)
                conn.execute("ROLLBACK")
            raise

    def _apply_each(self, ops: Sequence[TransactionOperation]) -> list[tuple[int, StoreError]]:
        """Like :meth:`_apply_all`, but an item whose check fails is left out (``_apply``
        checks before it writes) and reported, instead of aborting the others."""
        conn = self._connection()
        now = time.time()
        failed: list[tuple[int, StoreError]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for index, op in enumerate(ops):
                try:
                    self._apply(conn, op, now)
                except ETagMismatch as exc:
                    failed.append((index, exc))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return failed

    def _apply(self, conn: sqlite3.Connection, op: TransactionOperation, now: float) -> None:
        t = self._table
        row = conn.execute(
            f'SELECT version, expires_at FROM "{t}" WHERE key = ?', (op.key,)
        ).fetchone()
        live = row is not None and (row[1] is None or row[1] > now)
        if op.etag is not None:
            if not live or row is None or row[0] != parse_version(op.etag):
                raise ETagMismatch(op.key)
        elif isinstance(op, SetRequest) and op.insert_only and live:
            raise ETagMismatch(op.key)
        if isinstance(op, DeleteRequest):
            if row is not None:
                conn.execute(f'DELETE FROM "{t}" WHERE key = ?', (op.key,))
            return
        (version,) = conn.execute(
            f"UPDATE \"{t}_meta\" SET value = value + 1 WHERE name = 'version' RETURNING value"
        ).fetchone()
        expires = now + op.ttl if op.ttl is not None and op.ttl > 0 else None
        conn.execute(
            f'INSERT INTO "{t}" (key, value, version, expires_at, is_json) '
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
            "version = excluded.version, expires_at = excluded.expires_at, "
            "is_json = excluded.is_json",
            (op.key, op.value, version, expires, json_document(op.value)),
        )

    def _query(self, req: QueryRequest) -> QueryResult:
        conn = self._reader_connection()
        sql, params = sqlite_select(self._table, req.query, req.key_prefix, time.time())
        items = tuple(
            QueryItem(key, bytes(value), str(version))
            for key, value, version in conn.execute(sql, params)
        )
        return QueryResult(items, next_token(req.query, len(items)))

    def _purge(self) -> int:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                f'DELETE FROM "{self._table}" WHERE expires_at IS NOT NULL AND expires_at <= ?',
                (time.time(),),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # BEGIN itself may have failed (lock busy past timeout)
                conn.execute("ROLLBACK")
            raise
        return cur.rowcount
