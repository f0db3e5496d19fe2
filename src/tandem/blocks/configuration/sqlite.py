"""``configuration.sqlite``: the embedded configuration store. Items are rows of
``table`` (default ``configuration``: key, value, version, metadata as JSON) in one SQLite
file (default ``$TANDEM_HOME/configuration.db``); edit them with any SQLite client.
Subscribers see changes within ``pollInterval`` (default 0.5 s)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence

from tandem.blocks.component_metadata import ComponentConfigError, as_seconds, lookup
from tandem.blocks.configuration.store import DELETED, ConfigurationItem, Items
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.sqlite_files import SqliteThread

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _metadata(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}


class SqliteConfigurationStore:
    def __init__(self, path: str, table: str, poll: float, busy_timeout: float) -> None:
        self._table, self._poll = table, poll
        self._sql = SqliteThread(
            path,
            busy_timeout,
            f'CREATE TABLE IF NOT EXISTS "{table}" ('
            "key TEXT PRIMARY KEY, value TEXT NOT NULL, version TEXT NOT NULL DEFAULT '', "
            "metadata TEXT)",
            name="configuration-sqlite",
        )

    def _read(self, keys: Sequence[str]) -> Items:
        sql = f'SELECT key, value, version, metadata FROM "{self._table}"'
        conn = self._sql.db()
        if keys:
            marks = ",".join("?" * len(keys))
            rows = conn.execute(f"{sql} WHERE key IN ({marks})", list(keys)).fetchall()
        else:
            rows = conn.execute(sql).fetchall()
        return {
            str(k): ConfigurationItem(str(v), str(ver or ""), _metadata(md))
            for k, v, ver, md in rows
        }

    async def get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        items: Items = await self._sql.run(self._read, list(keys))
        return items

    async def watch(
        self, keys: Sequence[str], metadata: Mapping[str, str]
    ) -> AsyncGenerator[Items, None]:
        seen = await self.get(keys, metadata)
        yield {}  # the baseline is read: changes from here on are seen
        while True:
            await asyncio.sleep(self._poll)
            now = await self.get(keys, metadata)
            changed: Items = {k: v for k, v in now.items() if seen.get(k) != v}
            changed.update({k: DELETED for k in seen if k not in now})
            seen = now
            if changed:
                yield changed

    async def close(self) -> None:
        await self._sql.close()


def create(spec: ComponentSpec, ctx: ComponentContext) -> SqliteConfigurationStore:
    md = spec.metadata
    table = lookup(md, "table") or "configuration"
    if not _IDENT.match(table):
        raise ComponentConfigError(
            f"configuration store {spec.name}: table {table!r} is not a name"
        )
    return SqliteConfigurationStore(
        lookup(md, "connectionString") or str(ctx.home / "configuration.db"),
        table,
        as_seconds("pollInterval", lookup(md, "pollInterval"), 0.5),
        as_seconds("busyTimeout", lookup(md, "busyTimeout"), 5.0),
    )
