"""The ext_proc servicer over a real gRPC Unix socket, with the client playing Envoy."""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc
import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.extproc import ExtProcServicer
from tandem.ext_proc.router import Router


def _headers(method: str, path: str, *, end_of_stream: bool, extra: dict[str, str] | None = None):
    hs = [
        base_pb2.HeaderValue(key=":method", raw_value=method.encode()),
        base_pb2.HeaderValue(key=":path", raw_value=path.encode()),
    ]
    hs += [base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in (extra or {}).items()]
    return ep.ProcessingRequest(
        request_headers=ep.HttpHeaders(
            headers=base_pb2.HeaderMap(headers=hs), end_of_stream=end_of_stream
        )
    )


@pytest.fixture
async def stub():
    router = Router()
    seen: list[ApiRequest] = []

    async def echo(req: ApiRequest) -> ApiResponse:
        seen.append(req)
        return ApiResponse.json(
            {
                "body": req.body.decode(),
                "q": req.query,
                "app": req.app_id,
                "h": req.headers.get("x-test", ""),
            }
        )

    async def boom(req: ApiRequest) -> ApiResponse:
        raise RuntimeError("kaput")

    async def refuse(req: ApiRequest) -> ApiResponse:
        raise DaprError("ERR_STATE_STORE_NOT_FOUND", "state store nope is not found")

    router.add(("GET", "POST"), "/echo", echo)
    router.add("GET", "/boom", boom)
    router.add("GET", "/refuse", refuse)
    server = grpc.aio.server()
    ep_grpc.add_ExternalProcessorServicer_to_server(
        ExtProcServicer(Dispatcher(router), "fallback"), server
    )
    sock = Path(tempfile.mkdtemp(prefix="tx", dir="/tmp")) / "rt.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    yield ep_grpc.ExternalProcessorStub(channel)
    await channel.close()
    await server.stop(0)


def _status(resp: ep.ProcessingResponse) -> int:
    return resp.immediate_response.status.code


def _content_type(resp: ep.ProcessingResponse) -> bytes:
    for h in resp.immediate_response.headers.set_headers:
        if h.header.key == "content-type":
            return h.header.raw_value
    return b""


async def test_bodiless_request_is_answered_at_the_headers_step(stub):
    call = stub.Process(metadata=(("x-tandem-app-id", "orders"),))
    await call.write(_headers("GET", "/echo?a=1", end_of_stream=True, extra={"x-test": "yes"}))
    resp = await call.read()
    call.cancel()
    assert resp.WhichOneof("response") == "immediate_response"
    assert _status(resp) == 200
    assert _content_type(resp) == b"application/json"
    assert orjson.loads(resp.immediate_response.body) == {
        "body": "",
        "q": "a=1",
        "app": "orders",
        "h": "yes",
    }


async def test_request_with_body_continues_then_answers_after_body(stub):
    call = stub.Process()
    await call.write(_headers("POST", "/echo", end_of_stream=False))
    first = await call.read()
    assert first.WhichOneof("response") == "request_headers"
    await call.write(
        ep.ProcessingRequest(request_body=ep.HttpBody(body=b"hello", end_of_stream=True))
    )
    second = await call.read()
    call.cancel()
    assert _status(second) == 200
    assert orjson.loads(second.immediate_response.body)["body"] == "hello"
    assert orjson.loads(second.immediate_response.body)["app"] == "fallback"


async def test_dapr_error_is_rendered_as_dapr_json(stub):
    call = stub.Process()
    await call.write(_headers("GET", "/refuse", end_of_stream=True))
    resp = await call.read()
    call.cancel()
    assert _status(resp) == 400
    assert orjson.loads(resp.immediate_response.body) == {
        "errorCode": "ERR_STATE_STORE_NOT_FOUND",
        "message": "state store nope is not found",
    }


async def test_handler_crash_is_a_500_and_the_server_keeps_serving(stub):
    call = stub.Process()
    await call.write(_headers("GET", "/boom", end_of_stream=True))
    resp = await call.read()
    call.cancel()
    assert _status(resp) == 500
    assert orjson.loads(resp.immediate_response.body)["errorCode"] == "ERR_INTERNAL"
    call = stub.Process()
    await call.write(_headers("GET", "/echo", end_of_stream=True))
    assert _status(await call.read()) == 200
    call.cancel()


async def test_unknown_route_is_dapr_shaped_404(stub):
    call = stub.Process()
    await call.write(_headers("GET", "/v1.0/nothing", end_of_stream=True))
    resp = await call.read()
    call.cancel()
    assert _status(resp) == 404
    assert "errorCode" in orjson.loads(resp.immediate_response.body)
