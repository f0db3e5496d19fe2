"""Component-specific behaviour beyond the shared conformance suite."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest
from state_helpers import STORE, eventually

from servers import PostgresServer, RedisServer, free_port, run_redis_process
from tandem.blocks.component_metadata import ComponentConfigError
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.memory import MemoryStateStore
from tandem.blocks.state.postgresql import PostgresStateStore, connect_args
from tandem.blocks.state.postgresql import create as create_pg
from tandem.blocks.state.service import StateService
from tandem.blocks.state.sqlite import SqliteStateStore
from tandem.blocks.state.sqlite import create as create_sqlite
from tandem.blocks.state.store import Feature, SetRequest

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


async def test_redis_reads_and_counts_on_from_hashes_written_by_the_old_global_counter(
    redis_server: RedisServer,
) -> None:
    """Before per-key versions, Tandem drew versions from ``tandem||etag-seq``: such a hash
    reads back as it is, and the next write counts on from its version."""
    import redis.asyncio as aioredis

    prefix = f"old-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    await client.hset(f"{prefix}||k", mapping={"data": b'"old"', "version": b"41"})
    await client.set("tandem||etag-seq", 41)
    md = {"redisHost": redis_server.address, "keyPrefix": prefix}
    svc = StateService.from_specs([ComponentSpec(STORE, "state.redis", metadata=md)], CTX)
    try:
        got = await svc.get(STORE, "k")
        assert (got.data, got.etag) == (b'"old"', "41")
        await svc.save(STORE, [SetRequest("k", b'"new"', etag="41")])
        assert (await svc.get(STORE, "k")).etag == "42"
        assert await client.get("tandem||etag-seq") == b"41"  # no longer used
    finally:
        await client.aclose()
        await svc.close()


async def test_redis_call_without_an_answer_fails_after_read_timeout_and_the_store_recovers(
    tmp_path: Path,
) -> None:
    """``readTimeout`` bounds every call (the store sets it, not the client's socket): a
    frozen server costs a read and a write Dapr's 500 in about that time, and both work
    again once it answers."""
    with run_redis_process(tmp_path) as redis:
        md = {"redisHost": redis.server.address, "readTimeout": "500ms", "maxRetries": "0"}
        svc = StateService.from_specs([ComponentSpec(STORE, "state.redis", metadata=md)], CTX)
        try:
            await svc.save(STORE, [SetRequest("k", b"1")])
            redis.freeze(True)
            try:
                for call in (svc.get(STORE, "k"), svc.save(STORE, [SetRequest("k", b"2")])):
                    with pytest.raises(DaprError) as err:
                        await asyncio.wait_for(call, timeout=5)
                    assert err.value.http_status == 500 and "timed out" in str(err.value)
            finally:
                redis.freeze(False)
            await svc.save(STORE, [SetRequest("k", b"3")])
            assert (await svc.get(STORE, "k")).data == b"3"
        finally:
            await svc.close()


async def test_redis_first_calls_after_a_restart_are_answered_on_fresh_connections(
    tmp_path: Path,
) -> None:
    """Redis stopped and started again: the connections the store kept are closed, and the
    very next reads and writes find that out before sending, and go on new ones, with no
    error, even with ``maxRetries: 0``. The restarted server has lost the store's scripts:
    the writes load them again."""
    with run_redis_process(tmp_path) as redis:
        md = {"redisHost": redis.server.address, "maxRetries": "0"}
        svc = StateService.from_specs([ComponentSpec(STORE, "state.redis", metadata=md)], CTX)
        try:
            await asyncio.gather(*(svc.save(STORE, [SetRequest(f"k{i}", b"1")]) for i in range(8)))
            await asyncio.gather(*(svc.get(STORE, f"k{i}") for i in range(8)))
            redis.stop()
            redis.start()
            saves = [svc.save(STORE, [SetRequest(f"k{i}", b"2")]) for i in range(8)]
            await asyncio.gather(*saves)
            got = await asyncio.gather(*(svc.get(STORE, f"k{i}") for i in range(8)))
            assert [(g.data, g.etag) for g in got] == [(b"2", "1")] * 8
        finally:
            await svc.close()


async def test_redis_writes_in_flight_after_a_script_flush_load_it_again(
    redis_server: RedisServer,
) -> None:
    """A server that forgot the store's scripts (SCRIPT FLUSH, a failover) answers the
    batched writes NOSCRIPT; each is then written through the script loaded again."""
    import redis.asyncio as aioredis

    md = {"redisHost": redis_server.address, "keyPrefix": f"flush-{uuid.uuid4().hex[:8]}"}
    svc = StateService.from_specs([ComponentSpec(STORE, "state.redis", metadata=md)], CTX)
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        await svc.save(STORE, [SetRequest("s0", b"0")])
        await client.script_flush()
        await asyncio.gather(*(svc.save(STORE, [SetRequest(f"s{i}", b"1")]) for i in range(8)))
        got = await asyncio.gather(*(svc.get(STORE, f"s{i}") for i in range(8)))
        assert [g.data for g in got] == [b"1"] * 8
        assert got[0].etag == "2" and {g.etag for g in got[1:]} == {"1"}
    finally:
        await client.aclose()
        await svc.close()


async def test_redis_key_that_cannot_be_sent_fails_alone_among_calls_in_flight(
    redis_server: RedisServer,
) -> None:
    """Calls in flight share one round trip; a key with no UTF-8 form (a lone surrogate)
    fails its own read and write, and the calls beside it are served."""
    md = {"redisHost": redis_server.address, "keyPrefix": f"bad-{uuid.uuid4().hex[:8]}"}
    svc = StateService.from_specs([ComponentSpec(STORE, "state.redis", metadata=md)], CTX)
    bad = "bad\udc80"
    try:
        saves = await asyncio.gather(
            svc.save(STORE, [SetRequest(bad, b"1")]),
            svc.save(STORE, [SetRequest("good", b"1")]),
            return_exceptions=True,
        )
        gets = await asyncio.gather(
            svc.get(STORE, bad), svc.get(STORE, "good"), return_exceptions=True
        )
        for failed in (saves[0], gets[0]):
            assert isinstance(failed, DaprError) and failed.http_status == 500, failed
        assert saves[1] is None
        assert not isinstance(gets[1], BaseException) and gets[1].data == b"1"
    finally:
        await svc.close()


async def test_redis_transaction_over_a_corrupt_version_writes_nothing(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    prefix = f"bad-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    await client.hset(f"{prefix}||bad", mapping={"data": b"1", "version": b"not-a-number"})
    md = {"redisHost": redis_server.address, "keyPrefix": prefix}
    svc = StateService.from_specs([ComponentSpec(STORE, "state.redis", metadata=md)], CTX)
    try:
        with pytest.raises(DaprError):
            await svc.transact(STORE, [SetRequest("fresh", b"1"), SetRequest("bad", b"2")])
        assert (await svc.get(STORE, "fresh")).data is None  # all or nothing
    finally:
        await client.aclose()
        await svc.close()


# -- sqlite: tables from before the query API --------------------------------------------


async def test_sqlite_table_without_the_json_flag_is_migrated_and_queryable(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE state (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL, "
            "version INTEGER NOT NULL, expires_at REAL) WITHOUT ROWID"
        )
        conn.execute("CREATE TABLE state_meta (name TEXT NOT NULL PRIMARY KEY, value INTEGER)")
        conn.execute("INSERT INTO state_meta VALUES ('version', 7)")
        conn.execute("INSERT INTO state VALUES ('app||j', CAST('{\"v\": 1}' AS BLOB), 7, NULL)")
        conn.execute("INSERT INTO state VALUES ('app||t', CAST('text' AS BLOB), 6, NULL)")
    spec = ComponentSpec(STORE, "state.sqlite", metadata={"connectionString": str(db)})
    svc = StateService.from_specs([spec], CTX)
    try:
        result = await svc.query(STORE, b'{"filter": {"EQ": {"v": 1}}}')
        assert [(i.key, i.etag) for i in result.items] == [("j", "7")]
        assert len((await svc.query(STORE, b"{}")).items) == 2
    finally:
        await svc.close()


# -- postgresql -------------------------------------------------------------------------


def test_postgresql_connection_string_forms() -> None:
    url = connect_args({"connectionString": "postgres://u:p@db:5433/x"}, 20)
    assert url == {"dsn": "postgres://u:p@db:5433/x", "timeout": 10.0}
    kv = connect_args(
        {
            "ConnectionString": "host=db port=5433 user=u password='p w' dbname=x "
            "sslmode=disable connect_timeout=3",
            "database": "ignored",
        },
        20,
    )
    assert kv == {
        "host": "db",
        "port": 5433,
        "user": "u",
        "password": "p w",
        "database": "x",
        "ssl": False,
        "timeout": 3.0,
    }
    fields = connect_args({"host": "db", "user": "u", "password": "p", "database": "x"}, 5)
    assert fields == {"host": "db", "user": "u", "password": "p", "database": "x", "timeout": 5.0}
    for bad in ({}, {"connectionString": "host"}, {"connectionString": "host='db"}):
        with pytest.raises(ComponentConfigError):
            connect_args(bad, 20)


@pytest.mark.parametrize("name", ['x"; DROP TABLE y', "a.b.c", "1abc", ""])
def test_postgresql_table_names_must_be_plain_identifiers(name: str) -> None:
    md = {"connectionString": "postgres://db/x", "tableName": name or "."}
    with pytest.raises(ComponentConfigError):
        create_pg(ComponentSpec(STORE, "state.postgresql", metadata=md), CTX)


def pg_service(
    pg: PostgresServer, version: str = "v1", app: str | None = None, **metadata: str
) -> StateService:
    md = {"connectionString": pg.url} | metadata
    ctx = ComponentContext(app_id=app or f"app-{uuid.uuid4().hex[:12]}")
    return StateService.from_specs([ComponentSpec(STORE, "state.postgresql", version, md)], ctx)


async def pg_fetch(pg: PostgresServer, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg.url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_postgresql_cleanup_only_reclaims_rows_reads_already_hide(
    postgres_server: PostgresServer,
) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    svc = pg_service(postgres_server, tableName=table, cleanupInterval="0")
    try:
        await svc.save(STORE, [SetRequest("k", b"1", metadata={"ttlInSeconds": "1"})])
        await svc.save(STORE, [SetRequest("keep", b"1")])

        async def expired() -> bool:
            return (await svc.get(STORE, "k")).data is None

        await eventually(expired)
        assert len(await pg_fetch(postgres_server, f'SELECT key FROM "{table}"')) == 2
        store = svc.components[STORE].store
        assert isinstance(store, PostgresStateStore)
        assert await store.purge_expired() == 1
        rows = await pg_fetch(postgres_server, f'SELECT key FROM "{table}"')
        assert [r["key"] for r in rows] == [svc.components[STORE].keys.stored("keep")]
    finally:
        await svc.close()


async def test_postgresql_periodic_cleanup_runs_on_its_own(postgres_server: PostgresServer) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    svc = pg_service(
        postgres_server, tableName=table, metadataTableName=f"{table}_meta", cleanupInterval="0.2"
    )
    try:
        await svc.save(STORE, [SetRequest("k", b"1", metadata={"ttlInSeconds": "1"})])

        async def swept() -> bool:
            return not await pg_fetch(postgres_server, f'SELECT key FROM "{table}"')

        await eventually(swept)
        meta = await pg_fetch(postgres_server, f'SELECT key FROM "{table}_meta"')
        assert [r["key"] for r in meta] == [f"last-cleanup-{table}"]
    finally:
        await svc.close()


async def test_postgresql_schema_qualified_table_and_v2_keeps_bytes_only(
    postgres_server: PostgresServer,
) -> None:
    schema = f"s_{uuid.uuid4().hex[:8]}"
    await pg_fetch(postgres_server, f'CREATE SCHEMA "{schema}"')
    v1 = pg_service(postgres_server, tableName=f"{schema}.v1")
    v2 = pg_service(postgres_server, "v2", tableName=f"{schema}.v2")
    try:
        for svc in (v1, v2):
            await svc.save(STORE, [SetRequest("j", b'{"a": 1}'), SetRequest("b", b"\xff")])
            assert (await svc.get(STORE, "j")).data == b'{"a": 1}'
        flags = {
            name: [
                r["value_json"]
                for r in await pg_fetch(
                    postgres_server, f'SELECT value_json FROM "{schema}"."{name}" ORDER BY key'
                )
            ]
            for name in ("v1", "v2")
        }
        assert flags == {"v1": [None, '{"a": 1}'], "v2": [None, None]}
        assert Feature.QUERY_API in v1.features(STORE)
        assert Feature.QUERY_API not in v2.features(STORE)
    finally:
        await v1.close()
        await v2.close()


async def test_postgresql_uses_one_bounded_pool_per_component(
    postgres_server: PostgresServer,
) -> None:
    svc = pg_service(postgres_server, maxConns="3")
    store = svc.components[STORE].store
    assert isinstance(store, PostgresStateStore)
    try:
        await svc.save(STORE, [SetRequest("k", b"1")])
        pool = store._pool
        await asyncio.gather(*(svc.get(STORE, "k") for _ in range(100)))
        assert store._pool is pool and pool is not None and pool.get_size() <= 3
    finally:
        await svc.close()


async def test_postgresql_write_the_database_refuses_fails_alone_among_writes_in_flight(
    postgres_server: PostgresServer,
) -> None:
    """Last-write saves in flight together share one statement; a key PostgreSQL cannot
    hold (a NUL character) fails its own save only, and the others are stored."""
    svc = pg_service(postgres_server)
    try:
        keys = ["a", "b", "bad\x00key", "c", "d"]
        results = await asyncio.gather(
            *(svc.save(STORE, [SetRequest(key, key[:1].encode())]) for key in keys),
            return_exceptions=True,
        )
        failed = [key for key, r in zip(keys, results, strict=True) if r is not None]
        assert failed == ["bad\x00key"]
        for key in ("a", "b", "c", "d"):
            assert (await svc.get(STORE, key)).data == key.encode()
    finally:
        await svc.close()


async def test_postgresql_component_loads_while_the_database_is_down() -> None:
    md = {"connectionString": f"postgres://postgres@127.0.0.1:{free_port()}/x", "timeout": "2s"}
    svc = StateService.from_specs([ComponentSpec(STORE, "state.postgresql", metadata=md)], CTX)
    try:
        with pytest.raises(DaprError) as info:
            await svc.get(STORE, "k")
        assert (info.value.error_code, info.value.http_status) == ("ERR_STATE_GET", 500)
        with pytest.raises(DaprError) as info:
            await svc.query(STORE, b"{}")
        assert (info.value.error_code, info.value.http_status) == ("ERR_STATE_QUERY", 500)
    finally:
        await svc.close()


# -- in-memory --------------------------------------------------------------------------


async def test_in_memory_components_are_separate_and_purge_expired_entries() -> None:
    a = StateService.from_specs([ComponentSpec(STORE, "state.in-memory")], CTX)
    b = StateService.from_specs([ComponentSpec(STORE, "state.in-memory")], CTX)
    await a.save(STORE, [SetRequest("k", b"1", metadata={"ttlInSeconds": "1"})])
    assert (await b.get(STORE, "k")).data is None

    async def expired() -> bool:
        return (await a.get(STORE, "k")).data is None

    await eventually(expired)
    store = a.components[STORE].store
    assert isinstance(store, MemoryStateStore)
    assert store.purge_expired() == 1
    await a.close()
    await b.close()
