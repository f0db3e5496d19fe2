"""Conformance: every pub/sub component, against its real storage, delivers the same way.

Parametrised over ``pubsub.sqlite`` (a real file), ``pubsub.in-memory`` and ``pubsub.redis``
(a real Redis). Tests that need a second process or a surviving broker use the durable
kinds only (see test_pubsub_durability.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pubsub_helpers import FAST, Blocker, Recorder

from tandem.blocks.pubsub.broker import Message, Outcome, PublishEntry, SubscribeOptions


async def test_subscriber_receives_published_data_and_metadata(make_broker, topic):
    broker = await make_broker()
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions())
    await broker.publish(topic, b"\x00hello\xff", {"partitionKey": "k1"})
    [msg] = await rec.wait_for(1)
    assert msg.data == b"\x00hello\xff"
    assert msg.topic == topic
    assert msg.metadata == {"partitionKey": "k1"}
    assert msg.redeliveries == 0


async def test_every_published_message_is_delivered(make_broker, topic):
    broker = await make_broker()
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions())
    sent = [f"m{i}".encode() for i in range(200)]
    await asyncio.gather(*(broker.publish(topic, m, {}) for m in sent))
    await rec.wait_for(200)
    assert sorted(rec.payloads) == sorted(sent)


async def test_concurrent_publishes_to_several_topics_keep_each_publishers_order(
    make_broker, topic
):
    """Publishes that overlap (written together by the durable brokers) each reach their
    own topic, and one publisher's sequential messages arrive in the order it sent them."""
    broker = await make_broker(concurrency="1")
    topics = [f"{topic}-{i}" for i in range(3)]
    recorders = {t: Recorder() for t in topics}
    for t in topics:
        await broker.subscribe(t, recorders[t], SubscribeOptions())

    async def publisher(t: str) -> None:
        for i in range(40):
            await broker.publish(t, f"{t}/{i}".encode(), {"n": str(i)})

    await asyncio.gather(*(publisher(t) for t in topics))
    for t in topics:
        await recorders[t].wait_for(40)
        assert recorders[t].payloads == [f"{t}/{i}".encode() for i in range(40)]
        assert [m.metadata["n"] for m in recorders[t].messages] == [str(i) for i in range(40)]


async def test_each_consumer_group_gets_its_own_copy(make_broker, topic):
    broker = await make_broker()
    a, b = Recorder(), Recorder()
    await broker.subscribe(topic, a, SubscribeOptions(group="group-a"))
    await broker.subscribe(topic, b, SubscribeOptions(group="group-b"))
    for i in range(20):
        await broker.publish(topic, str(i).encode(), {})
    await a.wait_for(20)
    await b.wait_for(20)
    assert sorted(a.payloads) == sorted(b.payloads)


async def test_consumers_of_one_group_share_the_messages_once(make_broker, topic):
    broker = await make_broker()
    both = Recorder()
    by_consumer: dict[str, list[bytes]] = {"first": [], "second": []}

    def consumer(name: str) -> Callable[[Message], Awaitable[Outcome]]:
        async def handle(msg: Message) -> Outcome:
            by_consumer[name].append(msg.data)
            return await both(msg)

        return handle

    await broker.subscribe(topic, consumer("first"), SubscribeOptions())
    await broker.subscribe(topic, consumer("second"), SubscribeOptions())
    sent = [str(i).encode() for i in range(100)]
    await broker.bulk_publish(topic, [PublishEntry(f"e{i}", m) for i, m in enumerate(sent)])
    await both.wait_for(100)
    assert sorted(both.payloads) == sorted(sent)  # none twice
    assert sorted(by_consumer["first"] + by_consumer["second"]) == sorted(sent)


async def test_retry_outcome_redelivers_until_success(make_broker, topic):
    broker = await make_broker(**FAST)
    rec = Recorder(lambda m: Outcome.RETRY if m.redeliveries < 2 else Outcome.SUCCESS)
    await broker.subscribe(topic, rec, SubscribeOptions())
    await broker.publish(topic, b"again", {})
    msgs = await rec.wait_for(3)
    assert [m.data for m in msgs] == [b"again"] * 3
    assert msgs[-1].redeliveries >= 1


async def test_handler_exception_counts_as_retry(make_broker, topic):
    broker = await make_broker(**FAST)
    calls: list[Message] = []
    done = asyncio.Event()

    async def flaky(msg: Message) -> Outcome:
        calls.append(msg)
        if len(calls) == 1:
            raise RuntimeError("boom")
        done.set()
        return Outcome.SUCCESS

    await broker.subscribe(topic, flaky, SubscribeOptions())
    await broker.publish(topic, b"x", {})
    await asyncio.wait_for(done.wait(), 10)
    assert [m.data for m in calls] == [b"x", b"x"]


async def test_drop_and_success_are_not_redelivered(make_broker, topic):
    broker = await make_broker(**FAST)
    rec = Recorder(lambda m: Outcome.DROP if m.data == b"drop" else Outcome.SUCCESS)
    await broker.subscribe(topic, rec, SubscribeOptions())
    await broker.publish(topic, b"drop", {})
    await broker.publish(topic, b"ok", {})
    await rec.wait_for(2)
    # A later message proves the queue moved on; the first two must not come back.
    await broker.publish(topic, b"marker", {})
    await rec.wait_for(3)
    await asyncio.sleep(0.7)  # longer than processingTimeout + redeliverInterval
    assert sorted(rec.payloads) == [b"drop", b"marker", b"ok"]


async def test_at_most_concurrency_handlers_run_and_closing_hands_back_all_held(make_broker, topic):
    """The broker may fetch ahead of its handlers, but runs no more than ``concurrency``
    of them at once, and a closing subscription gives back the fetched-ahead messages too."""
    broker = await make_broker(concurrency="2", **FAST)
    blocker = Blocker()
    held = await broker.subscribe(topic, blocker, SubscribeOptions())
    sent = [f"m{i}".encode() for i in range(6)]
    for m in sent:
        await broker.publish(topic, m, {})
    await asyncio.wait_for(blocker.started.wait(), 10)
    await asyncio.sleep(0.3)  # room for a third handler to start, were the limit broken
    assert 1 <= len(blocker.got) <= 2  # Kafka: one at a time per partition
    await held.close(grace=0.05)
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions())
    await rec.wait_for(6)
    assert sorted(rec.payloads) == sorted(sent)


async def test_closing_a_subscription_hands_back_what_it_holds(make_broker, topic):
    broker = await make_broker(**FAST)
    blocker = Blocker()
    held = await broker.subscribe(topic, blocker, SubscribeOptions())
    await broker.publish(topic, b"held", {})
    await asyncio.wait_for(blocker.started.wait(), 10)
    await held.close(grace=0.05)
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions())
    [msg] = await rec.wait_for(1)
    assert msg.data == b"held"
