"""``bindings.sqlite``: an embedded binding pair on one SQLite file, for zero-infra setups.

Output: ``exec``/``query``/``close`` of the request's ``sql`` (``?`` params as a JSON
array), like ``bindings.postgresql``; and ``create``, which appends the request (data and
metadata) to the binding's queue table. Input: the queue's rows, oldest first, each to one
reader at a time (every sidecar on the machine that reads the binding competes for rows);
a row leaves the queue when the app took it, and a refused row comes back after
``retryInterval``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from tandem.blocks.bindings import sql as sqlb
from tandem.blocks.bindings.binding import (
    BindingError,
    EventHandler,
    InputEvent,
    InvokeRequest,
    InvokeResponse,
)
from tandem.blocks.component_metadata import ComponentConfigError, as_seconds, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.sqlite_files import connect_wal

_T = TypeVar("_T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A claimed row is another reader's for this long; then it is anyone's again (a reader
# that died mid-delivery does not keep it).
LEASE_S = 60.0


class SqliteBinding:
    operations = sqlb.OPERATIONS | {"create"}

    def __init__(self, path: str, table: str, *, poll: float, retry: float) -> None:
        self._path = path
        self._table = table
        self._poll = poll
        self._retry = retry
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bindings-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_wal(self._path, 5.0)
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " data BLOB NOT NULL, metadata TEXT NOT NULL, visible_at REAL NOT NULL)"
            )
        return self._conn

    # -- output ---------------------------------------------------------------------------

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if request.operation == "close":
            await self._run(self._close)
            return InvokeResponse()
        if request.operation == "create":
            md = orjson.dumps(dict(request.metadata)).decode()
            await self._run(self._enqueue, request.data, md)
            return InvokeResponse()
        sql, params = sqlb.statement(request)
        timer = sqlb.Timer()
        try:
            if request.operation == "exec":
                count = await self._run(self._exec, sql, params)
                return sqlb.exec_response(timer, sql, count)
            rows = await self._run(self._query, sql, params)
        except sqlite3.Error as exc:
            raise BindingError(f"{request.operation}: {exc}") from exc
        return sqlb.query_response(timer, sql, rows)

    def _enqueue(self, data: bytes, metadata: str) -> None:
        self._db().execute(
            f"INSERT INTO {self._table} (data, metadata, visible_at) VALUES (?, ?, ?)",
            (data, metadata, time.time()),
        )

    def _exec(self, sql: str, params: list[Any]) -> int:
        return max(self._db().execute(sql, params).rowcount, 0)

    def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self._db().execute(sql, params).fetchall()

    # -- input ----------------------------------------------------------------------------

    async def read(self, handler: EventHandler) -> None:
        while True:
            row = await self._run(self._claim)
            if row is None:
                await asyncio.sleep(self._poll)
                continue
            row_id, data, metadata = row
            ok = await handler(InputEvent(data, orjson.loads(metadata)))
            await self._run(self._settle, row_id, ok)

    def _claim(self) -> tuple[int, bytes, str] | None:
        db = self._db()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                f"SELECT id, data, metadata FROM {self._table} WHERE visible_at <= ?"
                " ORDER BY id LIMIT 1",
                (now,),
            ).fetchone()
            if row is not None:
                db.execute(
                    f"UPDATE {self._table} SET visible_at = ? WHERE id = ?", (now + LEASE_S, row[0])
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def _settle(self, row_id: int, ok: bool) -> None:
        if ok:
            self._db().execute(f"DELETE FROM {self._table} WHERE id = ?", (row_id,))
        else:
            self._db().execute(
                f"UPDATE {self._table} SET visible_at = ? WHERE id = ?",
                (time.time() + self._retry, row_id),
            )

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._run(self._close)
        self._pool.shutdown(wait=False)


def create(spec: ComponentSpec, ctx: ComponentContext) -> SqliteBinding:
    md = spec.metadata
    path = lookup(md, "connectionString") or str(ctx.home / "bindings.db")
    table = lookup(md, "tableName") or f"queue_{re.sub(r'[^A-Za-z0-9_]', '_', spec.name)}"
    if not _IDENT.match(table):
        raise ComponentConfigError(
            f"binding {spec.name}: tableName {table!r} is not a plain identifier"
        )
    return SqliteBinding(
        path,
        table,
        poll=as_seconds("pollInterval", lookup(md, "pollInterval"), 0.1),
        retry=as_seconds("retryInterval", lookup(md, "retryInterval"), 1.0),
    )
