"""``pubsub.redis``: closing a subscription ends promptly even when redis-py loses the
cancellation of a blocking ``XREADGROUP`` (seen as a streaming subscription that stayed
registered after its client had cancelled), and what that read returns is given back; a
restarted Redis takes the next publishes at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pubsub_helpers import FAST, Recorder

from servers import run_redis_process
from tandem.blocks.pubsub.broker import SubscribeOptions
from tandem.blocks.pubsub.redis import CLOSE_WAIT_S, create
from tandem.blocks.registry import ComponentContext, ComponentSpec


@pytest.fixture
def broker_kind() -> str:
    return "redis"


async def test_close_ends_when_the_blocking_read_ignores_its_cancellation(
    make_broker, topic, monkeypatch
):
    broker = await make_broker(**FAST)
    real_read = broker.client.xreadgroup

    async def deaf_read(*args: Any, **kwargs: Any) -> Any:
        call = asyncio.ensure_future(real_read(*args, **kwargs))
        while True:
            try:
                return await asyncio.shield(call)
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # lost, as redis-py sometimes does

    monkeypatch.setattr(broker.client, "xreadgroup", deaf_read)
    first = Recorder()
    sub = await broker.subscribe(topic, first, SubscribeOptions())
    await asyncio.sleep(0.2)  # the read now blocks in XREADGROUP

    closing = asyncio.create_task(sub.close(0))
    await asyncio.sleep(0.05)
    publisher = await make_broker(app_id="publisher")
    await publisher.publish(topic, b"during-close", {})  # the blocked read returns it
    await asyncio.wait({closing}, timeout=CLOSE_WAIT_S + 1.0)
    assert closing.done(), "close() still waits for the read whose cancellation was lost"
    assert first.messages == []

    other = Recorder()
    await (await make_broker(**FAST)).subscribe(topic, other, SubscribeOptions())
    [msg] = await other.wait_for(1)
    assert msg.data == b"during-close"


async def test_publishes_right_after_a_redis_restart_are_stored(tmp_path) -> None:
    """The publish connection kept between batches is closed by the restart; the next
    publishes (no retries: pubsub.redis has none) find that out before sending and are
    stored over a new connection, each answered once."""
    with run_redis_process(tmp_path) as redis:
        spec = ComponentSpec("pubsub", "pubsub.redis", metadata={"redisHost": redis.server.address})
        broker = create(spec, ComponentContext(app_id="app"))
        try:
            await asyncio.gather(*(broker.publish("t", b"before", {}) for _ in range(4)))
            redis.stop()
            redis.start()
            await asyncio.gather(*(broker.publish("t", b"after", {}) for _ in range(4)))
            entries = await broker.client.xrange("t")
            assert [fields[b"data"] for _, fields in entries] == [b"after"] * 4
        finally:
            await broker.close()
