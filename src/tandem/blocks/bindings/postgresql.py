"""``bindings.postgresql`` (output): ``exec``, ``query`` and ``close`` of the request's
``sql`` (``$1``-style ``params`` as a JSON array), on a pool from the same connection
metadata as the PostgreSQL state store."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tandem.blocks.bindings import sql as sqlb
from tandem.blocks.bindings.binding import BindingError, InvokeRequest, InvokeResponse
from tandem.blocks.component_metadata import as_int, as_seconds, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.postgresql import connect_args


class PostgresBinding:
    operations = sqlb.OPERATIONS

    def __init__(self, connect: dict[str, Any], *, max_connections: int, timeout: float) -> None:
        self._connect = connect
        self._max = max_connections
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self._max,
                    command_timeout=self._timeout,
                    **self._connect,
                )
            return self._pool

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if request.operation == "close":
            await self.close()
            return InvokeResponse()
        sql, params = sqlb.statement(request)
        pool = await self._ready()
        timer = sqlb.Timer()
        try:
            if request.operation == "exec":
                status = await pool.execute(sql, *params)
                # asyncpg answers the command tag ("INSERT 0 3", "UPDATE 2", "CREATE TABLE").
                last = status.rsplit(" ", 1)[-1]
                return sqlb.exec_response(timer, sql, int(last) if last.isdigit() else 0)
            rows = await pool.fetch(sql, *params)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise BindingError(f"{request.operation}: {exc}") from exc
        return sqlb.query_response(timer, sql, [tuple(r.values()) for r in rows])

    async def close(self) -> None:
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def create(spec: ComponentSpec, ctx: ComponentContext) -> PostgresBinding:
    md = spec.metadata
    timeout = as_seconds("timeout", lookup(md, "timeout", "timeoutInSeconds"), 20.0)
    try:
        connect = connect_args(md, timeout)
    except ValueError as exc:
        raise type(exc)(f"binding {spec.name}: {exc}") from None
    return PostgresBinding(
        connect, max_connections=as_int("maxConns", lookup(md, "maxConns"), 10), timeout=timeout
    )
