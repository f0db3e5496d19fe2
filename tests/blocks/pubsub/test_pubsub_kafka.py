"""``pubsub.kafka`` against a real Kafka-protocol broker (tansu): what only Kafka does —
topic creation, initialOffset, offsets committed only after acknowledgement, consumer
group takeover, and publishing to a broker that went away."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pubsub_helpers import Blocker, Recorder

from servers import KafkaServer, run_tansu_process
from tandem.blocks.component_metadata import ComponentConfigError
from tandem.blocks.pubsub.broker import Outcome, PublishEntry, SubscribeOptions
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component

HERE = Path(__file__).parent

# tansu holds group joins for about the session timeout: keep it short.
GROUP_TIMEOUTS = {"sessionTimeout": "1s", "heartbeatInterval": "300ms"}

MakeKafka = Callable[..., Awaitable[Any]]


def kafka_metadata(server: KafkaServer) -> dict[str, str]:
    return {"brokers": server.brokers, "authType": "none", **GROUP_TIMEOUTS}


def _spec(**metadata: str) -> ComponentSpec:
    return ComponentSpec("kafka-pubsub", "pubsub.kafka", metadata=metadata)


@pytest.fixture
async def make_kafka(tansu_server: KafkaServer, tmp_path: Path) -> AsyncIterator[MakeKafka]:
    made: list[Any] = []

    async def make(app_id: str = "app", **metadata: str) -> Any:
        md = kafka_metadata(tansu_server) | metadata
        broker = create_component(_spec(**md), ComponentContext(app_id=app_id, home=tmp_path))
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


# -- configuration -------------------------------------------------------------------------


def test_brokers_are_required():
    with pytest.raises(ComponentConfigError, match="brokers"):
        create_component(_spec(authType="none"), ComponentContext(app_id="a"))


@pytest.mark.parametrize("auth", ["password", "mtls", "oidc"])
def test_unsupported_auth_type_is_a_start_up_error_naming_the_field(auth):
    with pytest.raises(ComponentConfigError, match="authType"):
        create_component(_spec(brokers="h:9092", authType=auth), ComponentContext(app_id="a"))


def test_invalid_initial_offset_is_refused():
    with pytest.raises(ComponentConfigError, match="initialOffset"):
        create_component(
            _spec(brokers="h:9092", authType="none", initialOffset="middle"),
            ComponentContext(app_id="a"),
        )


def test_group_and_timeouts_read_as_dapr_does():
    from tandem.blocks.pubsub.kafka import parse_config

    ctx = ComponentContext(app_id="orders")
    cfg = parse_config(
        _spec(
            brokers=" a:9092, b:9093 ",
            consumerID="by-id",
            sessionTimeout="1500",
            heartbeatInterval="500ms",
        ),
        ctx,
    )
    assert cfg.brokers == ["a:9092", "b:9093"]
    assert cfg.group == "by-id"
    assert (cfg.session_timeout_ms, cfg.heartbeat_interval_ms) == (1500, 500)
    assert parse_config(_spec(brokers="a:1", consumerGroup="g", consumerID="x"), ctx).group == "g"
    default = parse_config(_spec(brokers="a:1"), ctx)
    assert (default.group, default.client_id, default.oldest) == ("orders", "orders", False)


# -- against tansu -------------------------------------------------------------------------


async def test_publish_creates_the_missing_topic(make_kafka, topic):
    broker = await make_kafka(initialOffset="oldest")
    await broker.publish(topic, b"first", {})
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions())
    [msg] = await rec.wait_for(1)
    assert msg.data == b"first"


async def test_newest_group_skips_what_was_published_before_it_subscribed(make_kafka, topic):
    broker = await make_kafka()
    await broker.publish(topic, b"before", {})
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions(group="newest"))
    await broker.publish(topic, b"after", {})
    await rec.wait_for(1)
    await broker.publish(topic, b"marker", {})
    await rec.wait_for(2)
    assert rec.payloads == [b"after", b"marker"]


async def test_messages_wait_for_a_group_whose_members_are_all_gone(make_kafka, topic):
    first = await make_kafka(app_id="worker")
    sub = await first.subscribe(topic, Recorder(), SubscribeOptions())
    await sub.close()
    publisher = await make_kafka(app_id="publisher")
    await publisher.publish(topic, b"while-away", {})
    back = await make_kafka(app_id="worker")
    rec = Recorder()
    await back.subscribe(topic, rec, SubscribeOptions())
    [msg] = await rec.wait_for(1)
    assert msg.data == b"while-away"


async def test_partition_key_keeps_one_key_on_one_partition_in_order(make_kafka, topic):
    broker = await make_kafka(numPartitions="4")
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions())
    sent = [f"m{i}".encode() for i in range(20)]
    for m in sent:
        await broker.publish(topic, m, {"partitionKey": "order-7"})
    await rec.wait_for(20)
    assert rec.payloads == sent
    assert len({m.id.split("-")[0] for m in rec.messages}) == 1
    assert all(m.metadata == {"partitionKey": "order-7"} for m in rec.messages)


async def test_oldest_group_reads_the_topic_from_its_start(make_kafka, topic):
    broker = await make_kafka(initialOffset="oldest")
    for i in range(3):
        await broker.publish(topic, f"m{i}".encode(), {})
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions(group="oldest"))
    await rec.wait_for(3)
    assert rec.payloads == [b"m0", b"m1", b"m2"]


async def test_retry_redelivers_in_place_and_keeps_partition_order(make_kafka, topic):
    broker = await make_kafka(consumeRetryInterval="20ms")
    rec = Recorder(
        lambda m: Outcome.RETRY if m.data == b"a" and m.redeliveries < 2 else Outcome.SUCCESS
    )
    await broker.subscribe(topic, rec, SubscribeOptions())
    await broker.bulk_publish(topic, [PublishEntry(str(i), d) for i, d in enumerate([b"a", b"b"])])
    await rec.wait_for(4)
    assert rec.payloads == [b"a", b"a", b"a", b"b"]
    assert [m.redeliveries for m in rec.messages] == [0, 1, 2, 0]


async def test_a_group_member_takes_over_what_another_held_unacknowledged(make_kafka, topic):
    first = await make_kafka(app_id="worker")
    blocker = Blocker()
    held = await first.subscribe(topic, blocker, SubscribeOptions())
    await first.publish(topic, b"held", {})
    await asyncio.wait_for(blocker.started.wait(), 10)
    # A second member joins while the first still holds the message ...
    second = await make_kafka(app_id="worker")
    rec = Recorder()
    await second.subscribe(topic, rec, SubscribeOptions())
    # ... and gets it once the first goes away without acknowledging it.
    await held.close(grace=0.05)
    [msg] = await rec.wait_for(1)
    assert msg.data == b"held"


async def test_a_killed_consumer_leaves_its_messages_to_the_group(
    make_kafka, tansu_server, topic, tmp_path
):
    md = kafka_metadata(tansu_server)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "held_consumer.py"),
        "pubsub.kafka",
        json.dumps(md),
        topic,
        "worker",
        stdout=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        await _read_line(proc.stdout, "READY")
        publisher = await make_kafka(app_id="publisher")
        await publisher.publish(topic, b"precious", {})
        assert await _read_line(proc.stdout, "HELD") == "precious"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    survivor = await make_kafka(app_id="worker")
    rec = Recorder()
    await survivor.subscribe(topic, rec, SubscribeOptions())
    [msg] = await rec.wait_for(1, timeout=15)
    assert msg.data == b"precious"


async def test_publish_to_a_broker_that_went_away_fails_instead_of_hanging(tmp_path, topic):
    with run_tansu_process(tmp_path / "gone") as tansu:
        md = kafka_metadata(tansu.server) | {"publishTimeout": "1500ms"}
        broker = create_component(_spec(**md), ComponentContext(app_id="a", home=tmp_path))
        try:
            await broker.publish(topic, b"ok", {})
            tansu.stop()
            started = time.monotonic()
            with pytest.raises(Exception):  # noqa: B017 - any error, as long as it is one
                await broker.publish(topic, b"lost", {})
            assert time.monotonic() - started < 5
            failed = await broker.bulk_publish(topic, [PublishEntry("e1", b"x")])
            assert failed == ["e1"]
        finally:
            await broker.close()


async def _read_line(stream: asyncio.StreamReader, prefix: str, timeout: float = 15.0) -> str:
    async def find() -> str:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"consumer exited before printing {prefix}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    return await asyncio.wait_for(find(), timeout)
