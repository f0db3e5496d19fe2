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
from tandem.blocks.sqlite_files import SqliteThread

_T = TypeVar("_T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A claimed row is another reader's for this long; then it is anyone's again (a reader
# that died mid-delivery does not keep it).
LEASE_S = 60.0


class SqliteBinding:
    operations = sqlb.OPERATIONS | {"create"}

    def __init__(self, path: str, table: str, *, poll: float, retry: float) -> None:
        self._table = table
        self._poll = poll
        self._retry = retry
        self._sql = SqliteThread(
            path,
            5.0,
            f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " data BLOB NOT NULL, metadata TEXT NOT NULL, visible_at REAL NOT NULL)",
            name="bindings-sqlite",
        )

    # -- output ---------------------------------------------------------------------------

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if request.operation == "close":
            await self._sql.run(self._sql.disconnect)
            return InvokeResponse()
        if request.operation == "create":
            md = orjson.dumps(dict(request.metadata)).decode()
            await self._sql.run(self._enqueue, request.data, md)
            return InvokeResponse()
        sql, params = sqlb.statement(request)
        timer = sqlb.Timer()
        try:
            if request.operation == "exec":
                count = await self._sql.run(self._exec, sql, params)
                return sqlb.exec_response(timer, sql, count)
            rows = await self._sql.run(self._query, sql, params)
        except sqlite3.Error as exc:
            raise BindingError(f"{request.operation}: {exc}") from exc
        return sqlb.query_response(timer, sql, rows)

    def _enqueue(self, data: bytes, metadata: str) -> None:
        self._sql.db().execute(
            f"INSERT INTO {self._table} (data, metadata, visible_at) VALUES (?, ?, ?)",
            (data, metadata, time.time()),
        )

    def _exec(self, sql: str, params: list[Any]) -> int:
        return max(self._sql.db().execute(sql, params).rowcount, 0)

    def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self._sql.db().execute(sql, params).fetchall()

    # -- input ----------------------------------------------------------------------------

    async def read(self, handler: EventHandler) -> None:
        while True:
            row = await self._sql.run(self._claim)
            if row is None:
                await asyncio.sleep(self._poll)
                continue
            row_id, data, metadata = row
            ok = await handler(InputEvent(data, orjson.loads(metadata)))
            await self._sql.run(self._settle, row_id, ok)

    def _claim(self) -> tuple[int, bytes, str] | None:
        db = self._sql.db()
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
            self._sql.db().execute(f"DELETE FROM {self._table} WHERE id = ?", (row_id,))
        else:
            self._sql.db().execute(
                f"UPDATE {self._table} SET visible_at = ? WHERE id = ?",
                (time.time() + self._retry, row_id),
            )

    async def close(self) -> None:
        await self._sql.close()


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
