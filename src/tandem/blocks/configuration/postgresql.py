"""``configuration.postgresql``: items are rows (key, value, version, metadata) of
``table``; subscribers LISTEN on the channel their subscription names
(``metadata.pgNotifyChannel``), which a trigger on the table notifies with the row as
Dapr documents (``{"table", "action", "data": row}``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import asyncpg

from tandem.blocks.component_metadata import ComponentConfigError, as_seconds, lookup
from tandem.blocks.configuration.store import DELETED, ConfigurationItem, Items
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.postgresql import _quoted, _table_name, connect_args

log = logging.getLogger("tandem.configuration")

CHANNEL = "pgNotifyChannel"


def _metadata(raw: Any) -> dict[str, str]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def item_of(row: Mapping[str, Any]) -> ConfigurationItem:
    return ConfigurationItem(
        str(row.get("value") or ""), str(row.get("version") or ""), _metadata(row.get("metadata"))
    )


def change_of(payload: str) -> tuple[str, ConfigurationItem] | None:
    """(key, item) of one notification, or None for one that is not a row change."""
    try:
        event = json.loads(payload)
        data = event["data"]
        key = str(data["key"])
    except (ValueError, KeyError, TypeError):
        return None
    if str(event.get("action", "")).upper() == "DELETE":
        return key, DELETED
    return key, item_of(data)


class PostgresConfigurationStore:
    def __init__(self, connect: dict[str, Any], table: tuple[str, ...], timeout: float) -> None:
        self._connect = connect
        self._table = _quoted(table)
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                # connect_args already carries the connect timeout.
                self._pool = await asyncpg.create_pool(**self._connect, min_size=0, max_size=4)
            return self._pool

    async def get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        pool = await self._get_pool()
        sql = f"SELECT key, value, version, metadata FROM {self._table}"
        if keys:
            rows = await pool.fetch(sql + " WHERE key = ANY($1::text[])", list(keys))
        else:
            rows = await pool.fetch(sql)
        return {str(r["key"]): item_of(dict(r)) for r in rows}

    async def watch(
        self, keys: Sequence[str], metadata: Mapping[str, str]
    ) -> AsyncGenerator[Items, None]:
        channel = metadata.get(CHANNEL)
        if not channel:
            raise ValueError(f"subscribing needs the metadata {CHANNEL} (the trigger's channel)")
        queue: asyncio.Queue[str] = asyncio.Queue()
        conn = await asyncpg.connect(**self._connect)
        try:
            await conn.add_listener(channel, lambda *args: queue.put_nowait(args[3]))
            wanted = set(keys)
            yield {}  # listening: changes from here on are seen
            while True:
                change = change_of(await queue.get())
                if change is not None and (not wanted or change[0] in wanted):
                    yield {change[0]: change[1]}
        finally:
            await conn.close()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def create(spec: ComponentSpec, ctx: ComponentContext) -> PostgresConfigurationStore:
    md = spec.metadata
    table = lookup(md, "table")
    if not table:
        raise ComponentConfigError(f"configuration store {spec.name}: metadata table is required")
    timeout = as_seconds("timeout", lookup(md, "timeout", "connectionTimeout"), 20.0)
    return PostgresConfigurationStore(
        connect_args(md, timeout), _table_name(table, "table"), timeout
    )
