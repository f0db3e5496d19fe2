"""The Dapr gRPC servicer over a real gRPC socket: metadata, errors, unimplemented RPCs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2, pubsub_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.blocks.metadata import AppConnection, ComponentInfo, MetadataService
from tandem.ext_proc.grpc_api import DaprGrpcServicer, StreamRpc
from tandem.ext_proc.grpc_decode import InvalidMessageInterceptor


@pytest.fixture
async def stub():
    md = MetadataService(
        app_id="orders",
        components=[ComponentInfo("statestore", "state.sqlite", "v1", ("ETAG", "TRANSACTIONAL"))],
        app=AppConnection(port=8080),
    )

    async def failing_get_state(request):
        raise DaprError(
            "ERR_STATE_STORE_NOT_FOUND",
            f"state store {request.store_name} is not found",
            info=ErrorInfo(
                reason="DAPR_STATE_NOT_FOUND", resource_type="state", resource_name="nope"
            ),
        )

    async def echo_topics(requests):
        async for request in requests:
            yield pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
                initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1()
            )
            del request

    server = grpc.aio.server(interceptors=[InvalidMessageInterceptor()])
    dapr_pb2_grpc.add_DaprServicer_to_server(
        DaprGrpcServicer(
            md,
            {"GetState": failing_get_state, "SubscribeTopicEventsAlpha1": StreamRpc(echo_topics)},
        ),
        server,
    )
    sock = Path(tempfile.mkdtemp(prefix="tg", dir="/tmp")) / "g.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    stub = dapr_pb2_grpc.DaprStub(channel)
    stub.channel = channel
    yield stub
    await channel.close()
    await server.stop(0)


async def test_get_metadata_reports_app_id_components_and_app_port(stub):
    resp = await stub.GetMetadata(metadata_pb2.GetMetadataRequest())
    assert resp.id == "orders"
    assert resp.runtime_version
    assert [(c.name, c.type, list(c.capabilities)) for c in resp.registered_components] == [
        ("statestore", "state.sqlite", ["ETAG", "TRANSACTIONAL"])
    ]
    assert resp.app_connection_properties.port == 8080


async def test_set_metadata_appears_in_extended_metadata(stub):
    await stub.SetMetadata(metadata_pb2.SetMetadataRequest(key="appCommand", value="python app.py"))
    resp = await stub.GetMetadata(metadata_pb2.GetMetadataRequest())
    assert resp.extended_metadata["appCommand"] == "python app.py"


async def test_dapr_error_becomes_grpc_status_with_rich_details(stub):
    from dapr.proto.runtime.v1 import state_pb2

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetState(state_pb2.GetStateRequest(store_name="nope", key="k"))
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "state store nope is not found"
    status = rpc_status.from_call(err)
    assert status is not None
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    decoded = error_details_pb2.ErrorInfo()
    infos[0].Unpack(decoded)
    assert (decoded.reason, decoded.domain) == ("DAPR_STATE_NOT_FOUND", "dapr.io")


async def test_unserved_rpc_answers_unimplemented_with_a_readable_message(stub):
    from dapr.proto.runtime.v1 import ai_pb2

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ConverseAlpha1(ai_pb2.ConversationRequest(name="llm"))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == (
        "the conversation API is not implemented by this Tandem runtime yet (ConverseAlpha1)"
    )


async def test_request_over_the_body_limit_is_resource_exhausted():
    from dapr.proto.runtime.v1 import state_pb2

    async def get_state(request):
        return state_pb2.GetStateResponse(data=b"x")

    server = grpc.aio.server()
    dapr_pb2_grpc.add_DaprServicer_to_server(
        DaprGrpcServicer(
            MetadataService(app_id="a"), {"GetState": get_state}, max_request_bytes=1024
        ),
        server,
    )
    sock = Path(tempfile.mkdtemp(prefix="tg", dir="/tmp")) / "g.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        ok = await stub.GetState(state_pb2.GetStateRequest(store_name="s", key="k"))
        assert ok.data == b"x"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetState(state_pb2.GetStateRequest(store_name="s", key="k" * 2000))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await server.stop(0)


async def test_an_undecodable_message_is_invalid_argument_not_unknown(stub):
    raw = stub.channel.unary_unary(
        "/dapr.proto.runtime.v1.Dapr/GetState",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\xff\xff\xff\xff\x0f")  # a truncated varint field tag
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be parsed as a GetStateRequest message" in (info.value.details() or "")
    assert "DecodeError" not in (info.value.details() or "")
    # The server keeps serving.
    resp = await stub.GetMetadata(metadata_pb2.GetMetadataRequest())
    assert resp.id == "orders"


async def test_an_oversized_name_is_echoed_truncated_so_the_answer_gets_through(stub):
    from dapr.proto.runtime.v1 import state_pb2

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetState(state_pb2.GetStateRequest(store_name="x" * 10_000, key="k"))
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # not RESOURCE_EXHAUSTED
    details = err.details() or ""
    assert details.startswith("state store xxxx") and len(details) < 1200
    assert "more characters" in details
    assert sum(len(v) for _, v in err.trailing_metadata() or ()) < 4096


async def test_an_undecodable_message_on_a_stream_ends_it_with_invalid_argument(stub):
    from dapr.proto.runtime.v1 import pubsub_pb2 as cb

    good = cb.SubscribeTopicEventsRequestAlpha1(
        initial_request=cb.SubscribeTopicEventsRequestInitialAlpha1(
            pubsub_name="pubsub", topic="orders"
        )
    ).SerializeToString()
    raw = stub.channel.stream_stream(
        "/dapr.proto.runtime.v1.Dapr/SubscribeTopicEventsAlpha1",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    call = raw(iter([good, b"\x0a\x7fpubsub"]))
    answers = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for answer in call:
            answers.append(answer)
    assert len(answers) == 1  # the good message was served first
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be parsed" in (info.value.details() or "")
