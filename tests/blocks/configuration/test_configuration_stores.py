"""configuration.redis (real redis-server), configuration.postgresql (real PostgreSQL,
with the trigger Dapr documents) and configuration.sqlite, through the
ConfigurationService the API doors call: get, a change reaching a subscription, deletes,
unsubscribe."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis

from servers import (  # noqa: F401  (fixture re-exports)
    PostgresServer,
    RedisServer,
    postgres_process,
    postgres_server,
    redis_server,
)
from tandem.blocks.configuration.service import ConfigurationService, Subscription
from tandem.blocks.configuration.store import DELETED, ConfigurationItem
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec

KINDS = ("redis", "postgresql", "sqlite")
DEADLINE = 15.0

TRIGGER = """
CREATE TABLE IF NOT EXISTS {table} (
  key VARCHAR NOT NULL, value VARCHAR NOT NULL, version VARCHAR NOT NULL, metadata JSON
);
CREATE OR REPLACE FUNCTION {table}_event() RETURNS TRIGGER AS $$
DECLARE data json; notification json;
BEGIN
  IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
  notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
  PERFORM pg_notify('{table}', notification::text);
  RETURN NULL;
END; $$ LANGUAGE plpgsql;
CREATE TRIGGER {table}_trigger AFTER INSERT OR UPDATE OR DELETE ON {table}
  FOR EACH ROW EXECUTE PROCEDURE {table}_event();
"""


@dataclass
class Backend:
    service: ConfigurationService
    write: Callable[[str, str, str], Awaitable[None]]  # key, value, version
    delete: Callable[[str], Awaitable[None]]
    subscribe_md: dict[str, str]


async def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis(host=server.host, port=server.port)

    async def write(key: str, value: str, version: str) -> None:
        client.set(key, f"{value}||{version}")

    async def delete(key: str) -> None:
        client.delete(key)

    spec = ComponentSpec("conf", "configuration.redis", metadata={"redisHost": server.address})
    return Backend(ConfigurationService.from_specs([spec], CTX), write, delete, {})


async def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    table = f"conf_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server.url)
    await conn.execute(TRIGGER.format(table=table))

    async def write(key: str, value: str, version: str) -> None:
        await conn.execute(f"DELETE FROM {table} WHERE key = $1", key)
        await conn.execute(
            f"INSERT INTO {table} (key, value, version, metadata) VALUES ($1, $2, $3, '{{}}')",
            key,
            value,
            version,
        )

    async def delete(key: str) -> None:
        await conn.execute(f"DELETE FROM {table} WHERE key = $1", key)

    spec = ComponentSpec(
        "conf",
        "configuration.postgresql",
        metadata={"connectionString": server.url, "table": table},
    )
    backend = Backend(
        ConfigurationService.from_specs([spec], CTX), write, delete, {"pgNotifyChannel": table}
    )
    request.addfinalizer(lambda: asyncio.get_event_loop().run_until_complete(conn.close()))
    return backend


async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "conf.db"
    spec = ComponentSpec(
        "conf",
        "configuration.sqlite",
        metadata={"connectionString": str(path), "pollInterval": "0.05"},
    )
    service = ConfigurationService.from_specs([spec], CTX)
    await service.get("conf", [], {})  # creates the table

    def run(sql: str, *args: str) -> None:
        with sqlite3.connect(path) as db:
            db.execute(sql, args)

    async def write(key: str, value: str, version: str) -> None:
        run("INSERT OR REPLACE INTO configuration (key, value, version) VALUES (?, ?, ?)",
            key, value, version)  # fmt: skip

    async def delete(key: str) -> None:
        run("DELETE FROM configuration WHERE key = ?", key)

    return Backend(service, write, delete, {})


CTX = ComponentContext(app_id="app")


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    make = {"redis": _redis, "postgresql": _postgresql, "sqlite": _sqlite}[request.param]
    b = await make(request, tmp_path)
    yield b
    await b.service.close()


async def next_change(sub: Subscription) -> dict[str, ConfigurationItem]:
    return await asyncio.wait_for(anext(sub.changes()), DEADLINE)


def key() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


async def test_get_reads_values_and_versions(backend: Backend) -> None:
    a, b = key(), key()
    await backend.write(a, "one", "1")
    await backend.write(b, "two", "7")

    got = await backend.service.get("conf", [a, b, "absent"], {})
    assert got == {a: ConfigurationItem("one", "1"), b: ConfigurationItem("two", "7")}
    everything = await backend.service.get("conf", [], {})
    assert {a, b} <= set(everything)


async def test_a_change_reaches_a_subscription_until_it_ends(backend: Backend) -> None:
    a, other = key(), key()
    sub = await backend.service.subscribe("conf", [a], backend.subscribe_md)

    await backend.write(other, "ignored", "1")
    await backend.write(a, "v2", "2")
    assert await next_change(sub) == {a: ConfigurationItem("v2", "2")}
    await backend.delete(a)
    assert await next_change(sub) == {a: DELETED}

    await backend.service.unsubscribe("conf", sub.id)
    assert [c async for c in sub.changes()] == []  # ended
    with pytest.raises(DaprError, match="does not exist"):
        await backend.service.unsubscribe("conf", sub.id)


async def test_unknown_and_missing_stores_are_daprs_errors(backend: Backend) -> None:
    with pytest.raises(DaprError) as err:
        await backend.service.get("nope", [], {})
    assert (err.value.error_code, err.value.http_status) == (
        "ERR_CONFIGURATION_STORE_NOT_FOUND",
        400,
    )
    with pytest.raises(DaprError) as err:
        await ConfigurationService().get("conf", [], {})
    assert err.value.error_code == "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"


async def test_a_replaced_store_serves_at_once_and_its_subscriptions_end(tmp_path: Path) -> None:
    """Hot reload swaps a store in place: reads go to the new one, and subscribers of the
    old one see their stream end (they subscribe again, on the new store)."""
    first = await _sqlite(None, tmp_path)  # type: ignore[arg-type]  # (unused)
    service = first.service
    await first.write("k", "old", "1")
    sub = await service.subscribe("conf", ["k"], {})
    other = str(tmp_path / "other.db")
    spec = ComponentSpec("conf", "configuration.sqlite", metadata={"connectionString": other})
    replaced = await service.swap("conf", ConfigurationService.build(spec, CTX))
    assert replaced is not None
    await replaced.close()
    assert [c async for c in sub.changes()] == []  # ended
    assert await service.get("conf", ["k"], {}) == {}  # the new, empty store
    await service.swap("conf", None)
    with pytest.raises(DaprError) as err:
        await service.get("conf", [], {})
    assert err.value.error_code == "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"
