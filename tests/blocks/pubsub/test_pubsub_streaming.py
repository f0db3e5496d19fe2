"""Streaming subscriptions (``SubscribeTopicEventsAlpha1``) through the Dapr gRPC servicer on a
real gRPC socket, over the in-memory broker: the client side is a plain grpc.aio stream,
speaking the protocol the official SDK's ``DaprClient.subscribe`` speaks."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest
from dapr.proto.runtime.v1 import appcallback_pb2, dapr_pb2_grpc, metadata_pb2, pubsub_pb2
from google.protobuf.json_format import MessageToDict
from pubsub_helpers import Recorder, retrying

from tandem.blocks.metadata import MetadataService
from tandem.blocks.pubsub import streaming
from tandem.blocks.pubsub.broker import SubscribeOptions
from tandem.blocks.pubsub.memory import MemoryPubSub
from tandem.blocks.pubsub.scopes import TopicScopes
from tandem.blocks.pubsub.service import PublishRequest, PubSubComponent, PubSubService
from tandem.blocks.pubsub.streaming import StreamingSubscriptions
from tandem.ext_proc import pubsub_grpc
from tandem.ext_proc.blocks_wiring import SubscriptionBoard
from tandem.ext_proc.grpc_api import DaprGrpcServicer, StreamRpc

Status = appcallback_pb2.TopicEventResponse


class Sidecar:
    def __init__(self, service: PubSubService, broker: MemoryPubSub, stub: dapr_pb2_grpc.DaprStub):
        self.service, self.broker, self.stub = service, broker, stub

    async def publish(self, topic: str, data: object, **metadata: str) -> None:
        await self.service.publish(
            PublishRequest(
                "pubsub", topic, orjson.dumps(data), "application/json", metadata=metadata
            )
        )

    async def subscriptions(self) -> list[metadata_pb2.PubsubSubscription]:
        resp = await self.stub.GetMetadata(metadata_pb2.GetMetadataRequest())
        return list(resp.subscriptions)

    async def until_subscriptions(self, count: int, timeout: float = 5.0) -> list:
        deadline = time.monotonic() + timeout
        while len(subs := await self.subscriptions()) != count:
            assert time.monotonic() < deadline, f"{len(subs)} subscriptions, wanted {count}"
            await asyncio.sleep(0.01)  # polling the metadata API, with a deadline
        return subs


@pytest.fixture
async def sidecar() -> AsyncIterator[Sidecar]:
    broker = MemoryPubSub(group="app", redeliver_delay=0.01)
    scoped = TopicScopes.from_metadata({"subscriptionScopes": "app=allowed"})
    service = PubSubService(
        [
            PubSubComponent("pubsub", broker, "pubsub.in-memory"),
            PubSubComponent("scoped", MemoryPubSub(group="app"), "pubsub.in-memory", scoped),
        ],
        "app",
    )
    metadata = MetadataService("app")
    board = SubscriptionBoard(metadata)
    streams = StreamingSubscriptions(
        service, resiliencies=retrying(), on_change=board.set_streaming
    )
    server = grpc.aio.server()
    dapr_pb2_grpc.add_DaprServicer_to_server(
        DaprGrpcServicer(metadata, pubsub_grpc.rpcs(service, streams)), server
    )
    sock = Path(tempfile.mkdtemp(prefix="ts", dir="/tmp")) / "g.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    yield Sidecar(service, broker, dapr_pb2_grpc.DaprStub(channel))
    await channel.close()
    await server.stop(0)
    await streams.close()
    await service.close()


class Stream:
    """One streaming subscription from the client's side."""

    def __init__(
        self, stub: dapr_pb2_grpc.DaprStub, first: pubsub_pb2.SubscribeTopicEventsRequestAlpha1
    ):
        self._out: asyncio.Queue[pubsub_pb2.SubscribeTopicEventsRequestAlpha1 | None] = (
            asyncio.Queue()
        )
        self._out.put_nowait(first)
        self.call = stub.SubscribeTopicEventsAlpha1(self._requests())

    @classmethod
    async def open(
        cls, stub: dapr_pb2_grpc.DaprStub, topic: str, pubsub: str = "pubsub", **kw: object
    ) -> Stream:
        init = pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1(
            pubsub_name=pubsub, topic=topic, **kw
        )
        stream = cls(stub, pubsub_pb2.SubscribeTopicEventsRequestAlpha1(initial_request=init))
        first = await asyncio.wait_for(stream.call.read(), 5)
        assert first.WhichOneof("subscribe_topic_events_response_type") == "initial_response"
        return stream

    async def _requests(self) -> AsyncIterator[pubsub_pb2.SubscribeTopicEventsRequestAlpha1]:
        while (msg := await self._out.get()) is not None:
            yield msg

    async def event(self, timeout: float = 5.0) -> appcallback_pb2.TopicEventRequest:
        resp = await asyncio.wait_for(self.call.read(), timeout)
        assert resp is not grpc.aio.EOF, "the stream ended"
        return resp.event_message

    def answer(self, event: appcallback_pb2.TopicEventRequest, status: int) -> None:
        done = pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1(
            id=event.id, status=appcallback_pb2.TopicEventResponse(status=status)
        )
        self._out.put_nowait(pubsub_pb2.SubscribeTopicEventsRequestAlpha1(event_processed=done))

    def half_close(self) -> None:
        self._out.put_nowait(None)


async def test_stream_gets_published_events_as_topic_event_requests(sidecar):
    stream = await Stream.open(sidecar.stub, "orders")
    await sidecar.publish("orders", {"n": 1}, **{"cloudevent.subject": "s1"})
    event = await stream.event()
    assert (event.topic, event.pubsub_name, event.type, event.spec_version) == (
        "orders",
        "pubsub",
        "com.dapr.event.sent",
        "1.0",
    )
    assert (event.source, event.data_content_type) == ("app", "application/json")
    assert json.loads(event.data) == {"n": 1}
    ext = MessageToDict(event.extensions)
    assert ext["subject"] == "s1" and ext["topic"] == "orders" and ext["traceparent"]
    stream.answer(event, Status.SUCCESS)
    stream.call.cancel()


async def test_open_stream_is_listed_as_streaming_until_it_closes(sidecar):
    stream = await Stream.open(sidecar.stub, "orders", dead_letter_topic="dead")
    [sub] = await sidecar.subscriptions()
    assert (sub.pubsub_name, sub.topic, sub.dead_letter_topic) == ("pubsub", "orders", "dead")
    assert sub.type == metadata_pb2.PubsubSubscriptionType.STREAMING
    stream.half_close()
    assert await asyncio.wait_for(stream.call.read(), 5) is grpc.aio.EOF
    await sidecar.until_subscriptions(0)


async def test_retry_answer_redelivers_and_drop_goes_to_the_dead_letter_topic(sidecar):
    dead = Recorder()
    await sidecar.broker.subscribe("dead", dead, SubscribeOptions(group="dlq"))
    stream = await Stream.open(sidecar.stub, "orders", dead_letter_topic="dead")
    await sidecar.publish("orders", {"n": 2})
    first = await stream.event()
    stream.answer(first, Status.RETRY)
    again = await stream.event()
    assert again.id == first.id
    stream.answer(again, Status.DROP)
    [letter] = await dead.wait_for(1)
    assert orjson.loads(letter.data)["id"] == first.id
    stream.call.cancel()


async def test_closing_the_stream_hands_unanswered_events_back_to_the_broker(sidecar):
    stream = await Stream.open(sidecar.stub, "orders")
    await sidecar.publish("orders", {"n": 3})
    held = await stream.event()
    stream.call.cancel()  # goes away without answering
    await sidecar.until_subscriptions(0)
    again = await Stream.open(sidecar.stub, "orders")
    redelivered = await again.event()
    assert redelivered.id == held.id
    again.answer(redelivered, Status.SUCCESS)
    again.call.cancel()


async def test_events_answered_out_of_order_are_each_settled(sidecar):
    stream = await Stream.open(sidecar.stub, "orders")
    for n in range(3):
        await sidecar.publish("orders", {"n": n})
    events = [await stream.event() for _ in range(3)]
    for event in reversed(events):
        stream.answer(event, Status.SUCCESS)
    await sidecar.publish("orders", {"n": "after"})
    assert json.loads((await stream.event()).data) == {"n": "after"}  # nothing came back
    stream.call.cancel()


async def test_second_stream_for_the_same_topic_is_refused_while_the_first_is_open(
    sidecar, monkeypatch
):
    monkeypatch.setattr(streaming, "REPLACE_WAIT", 0.05)
    first = await Stream.open(sidecar.stub, "orders")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await Stream.open(sidecar.stub, "orders")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    first.call.cancel()
    await sidecar.until_subscriptions(0)
    replacement = await Stream.open(sidecar.stub, "orders")
    replacement.call.cancel()


@pytest.mark.parametrize(
    ("pubsub", "topic", "code"),
    [
        ("nope", "orders", grpc.StatusCode.INVALID_ARGUMENT),
        ("pubsub", "", grpc.StatusCode.INVALID_ARGUMENT),
        ("scoped", "not-allowed", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_stream_to_an_unknown_pubsub_empty_or_unscoped_topic_is_refused(
    sidecar, pubsub, topic, code
):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await Stream.open(sidecar.stub, topic, pubsub=pubsub)
    assert err.value.code() == code


async def test_stream_must_start_with_an_initial_request(sidecar):
    done = pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1(id="x")
    stream = Stream(
        sidecar.stub, pubsub_pb2.SubscribeTopicEventsRequestAlpha1(event_processed=done)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream.call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "initial_request" in (err.value.details() or "")


def test_servicer_refuses_a_unary_implementation_for_a_streaming_rpc():
    async def unary(request: object) -> None:
        return None

    async def gen(requests: AsyncIterator[object]) -> AsyncIterator[object]:
        yield None

    with pytest.raises(TypeError, match="SubscribeTopicEventsAlpha1"):
        DaprGrpcServicer(MetadataService("a"), {"SubscribeTopicEventsAlpha1": unary})
    with pytest.raises(TypeError, match="GetState"):
        DaprGrpcServicer(MetadataService("a"), {"GetState": StreamRpc(gen)})
