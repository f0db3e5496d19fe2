"""Durable brokers (``pubsub.sqlite`` over a real file, ``pubsub.redis`` over real Redis):
messages outlive their consumers, and a consumer that dies gives its messages back."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from pubsub_helpers import FAST, Recorder, broker_metadata

from tandem.blocks.pubsub.broker import SubscribeOptions

HERE = Path(__file__).parent


@pytest.fixture(params=["sqlite", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _read_line(stream: asyncio.StreamReader, prefix: str, timeout: float = 15.0) -> str:
    async def find() -> str:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"consumer exited before printing {prefix}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    return await asyncio.wait_for(find(), timeout)


async def test_messages_wait_for_a_group_whose_consumers_are_all_gone(make_broker, topic):
    first = await make_broker(app_id="worker")
    sub = await first.subscribe(topic, Recorder(), SubscribeOptions())
    await sub.close()
    publisher = await make_broker(app_id="publisher")
    await publisher.publish(topic, b"while-away", {})
    back = await make_broker(app_id="worker")
    rec = Recorder()
    await back.subscribe(topic, rec, SubscribeOptions())
    [msg] = await rec.wait_for(1)
    assert msg.data == b"while-away"


async def test_message_held_by_a_killed_consumer_is_redelivered_to_its_group(
    make_broker, broker_kind, topic, tmp_path, request
):
    redis = request.getfixturevalue("redis_server") if broker_kind == "redis" else None
    md = broker_metadata(broker_kind, tmp_path, redis) | FAST
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "held_consumer.py"),
        f"pubsub.{broker_kind}",
        json.dumps(md),
        topic,
        "worker",
        stdout=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        await _read_line(proc.stdout, "READY")
        publisher = await make_broker(app_id="publisher")
        await publisher.publish(topic, b"precious", {})
        assert await _read_line(proc.stdout, "HELD") == "precious"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    survivor = await make_broker(app_id="worker", **FAST)
    rec = Recorder()
    await survivor.subscribe(topic, rec, SubscribeOptions())
    [msg] = await rec.wait_for(1, timeout=10)
    assert msg.data == b"precious"
    assert msg.redeliveries >= 1
