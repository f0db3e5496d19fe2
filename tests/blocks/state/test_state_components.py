"""Component-specific behaviour beyond the shared conformance suite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from state_helpers import STORE, eventually

from servers import RedisServer
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state._meta import ComponentConfigError
from tandem.blocks.state.service import StateService
from tandem.blocks.state.sqlite import SqliteStateStore
from tandem.blocks.state.sqlite import create as create_sqlite
from tandem.blocks.state.store import SetRequest

CTX = ComponentContext(app_id="app")


async def test_sqlite_uses_wal_and_purges_expired_rows(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    spec = ComponentSpec(STORE, "state.sqlite", metadata={"connectionString": str(db)})
    svc = StateService.from_specs([spec], CTX)
    await svc.save(STORE, [SetRequest("k", b"1", metadata={"ttlInSeconds": "1"})])
    await svc.save(STORE, [SetRequest("keep", b"1")])

    async def expired() -> bool:
        return (await svc.get(STORE, "k")).data is None

    await eventually(expired)
    store = svc.components[STORE].store
    assert isinstance(store, SqliteStateStore)
    assert await store.purge_expired() == 1
    await svc.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT key FROM state").fetchall() == [("app||keep",)]


def test_sqlite_table_name_must_be_a_plain_identifier(tmp_path: Path) -> None:
    spec = ComponentSpec(STORE, "state.sqlite", metadata={"tableName": 'x"; DROP TABLE y'})
    with pytest.raises(ComponentConfigError):
        create_sqlite(spec, CTX)


async def test_sqlite_default_file_lives_under_the_tandem_home(tmp_path: Path) -> None:
    svc = StateService.from_specs(
        [ComponentSpec(STORE, "state.sqlite")], ComponentContext(app_id="a", home=tmp_path)
    )
    await svc.save(STORE, [SetRequest("k", b"1")])
    await svc.close()
    assert (tmp_path / "state.db").exists()


async def test_redis_component_ttl_default_applies_unless_the_request_says_otherwise(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    md = {"redisHost": redis_server.address, "ttlInSeconds": "100", "keyPrefix": "ttl-test"}
    svc = StateService.from_specs([ComponentSpec(STORE, "state.redis", metadata=md)], CTX)
    await svc.save(STORE, [SetRequest("default", b"1")])
    await svc.save(STORE, [SetRequest("never", b"1", metadata={"ttlInSeconds": "-1"})])
    await svc.save(STORE, [SetRequest("short", b"1", metadata={"ttlInSeconds": "5"})])
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        assert 90 < await client.ttl("ttl-test||default") <= 100
        assert await client.ttl("ttl-test||never") == -1
        assert 0 < await client.ttl("ttl-test||short") <= 5
    finally:
        await client.aclose()
        await svc.close()
