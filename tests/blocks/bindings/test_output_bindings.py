"""Output bindings through both front doors: the HTTP API (as the router dispatches it for
either HTTP door) and the gRPC ``InvokeBinding`` answer alike, against real targets (the
local file system, a local HTTP server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import orjson
import pytest
from aiohttp import web
from dapr.proto.runtime.v1 import binding_pb2

from tandem.blocks.bindings.service import BindingsService
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.ext_proc import bindings_grpc, bindings_http
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router


@dataclass
class Target:
    url: str
    seen: list[dict[str, object]]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    seen: list[dict[str, object]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {"method": request.method, "path": request.path, "headers": dict(request.headers),
             "body": body}
        )  # fmt: skip
        if request.path.endswith("/missing"):
            return web.Response(status=404, text="nope")
        return web.json_response(
            {"echo": body.decode(), "path": request.path}, headers={"X-Seen": "1"}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Target(f"http://127.0.0.1:{port}/base", seen)
    await runner.cleanup()


@dataclass
class Doors:
    service: BindingsService
    dispatch: Dispatcher
    root: Path

    async def http(self, name: str, body: object) -> ApiResponse:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.dispatch(ApiRequest("POST", f"/v1.0/bindings/{name}", "", {}, raw))

    async def grpc(
        self, name: str, operation: str, data: bytes = b"", **md: str
    ) -> binding_pb2.InvokeBindingResponse:
        rpc = bindings_grpc.rpcs(self.service)["InvokeBinding"]
        req = binding_pb2.InvokeBindingRequest(
            name=name, operation=operation, data=data, metadata=md
        )
        return await rpc(req)  # type: ignore[operator,no-any-return]


@pytest.fixture
async def doors(tmp_path: Path, target: Target) -> AsyncIterator[Doors]:
    root = tmp_path / "files"
    specs = [
        ComponentSpec("files", "bindings.localstorage", metadata={"rootPath": str(root)}),
        ComponentSpec("api", "bindings.http", metadata={"url": target.url}),
        ComponentSpec(
            "lenient", "bindings.http", metadata={"url": target.url, "errorIfNot2XX": "false"}
        ),
        ComponentSpec(
            "secured",
            "bindings.http",
            metadata={
                "url": target.url,
                "securityToken": "s3cret",
                "securityTokenHeader": "X-Api-Key",
            },
        ),
        ComponentSpec(
            "ticks", "bindings.cron", metadata={"schedule": "@every 1h", "direction": "input"}
        ),
    ]
    service = BindingsService.from_specs(specs, ComponentContext(app_id="app", home=tmp_path))
    router = Router()
    bindings_http.register(router, service)
    yield Doors(service, Dispatcher(router), root)
    await service.close()


def error_code(resp: ApiResponse) -> str:
    return str(orjson.loads(resp.body)["errorCode"])


async def test_localstorage_round_trip_through_both_doors(doors: Doors) -> None:
    resp = await doors.http(
        "files", {"operation": "create", "data": "hello", "metadata": {"fileName": "a/b.txt"}}
    )
    assert resp.status == 200
    assert orjson.loads(resp.body) == {"fileName": "a/b.txt"}
    assert (doors.root / "a" / "b.txt").read_bytes() == b"hello"  # a JSON string, unquoted

    got = await doors.grpc("files", "get", fileName="a/b.txt")
    assert got.data == b"hello"
    resp = await doors.http("files", {"operation": "get", "metadata": {"fileName": "a/b.txt"}})
    assert (resp.status, resp.body) == (200, b"hello")

    await doors.grpc("files", "create", b"raw bytes", fileName="c.bin")
    listed = orjson.loads((await doors.http("files", {"operation": "list"})).body)
    assert sorted(Path(p).name for p in listed) == ["b.txt", "c.bin"]

    resp = await doors.http("files", {"operation": "delete", "metadata": {"fileName": "c.bin"}})
    assert resp.status == 204
    assert not (doors.root / "c.bin").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../x"])
async def test_localstorage_refuses_paths_outside_its_root(doors: Doors, name: str) -> None:
    resp = await doors.http(
        "files", {"operation": "create", "data": "x", "metadata": {"fileName": name}}
    )
    assert (resp.status, error_code(resp)) == (500, "ERR_INVOKE_OUTPUT_BINDING")
    assert "outside" in orjson.loads(resp.body)["message"]
    with pytest.raises(DaprError) as info:
        await doors.grpc("files", "get", fileName=name)
    assert info.value.grpc_status == grpc.StatusCode.INTERNAL
    assert not (doors.root.parent / "escape.txt").exists()


async def test_http_binding_verbs_path_headers(doors: Doors, target: Target) -> None:
    resp = await doors.http(
        "api",
        {"operation": "post", "data": {"a": 1}, "metadata": {"path": "/orders/7", "X-Token": "t", "lower": "no"}},
    )  # fmt: skip
    assert resp.status == 200
    assert orjson.loads(resp.body)["echo"] == '{"a":1}'
    headers = dict(resp.headers)
    assert headers["metadata.statusCode"] == b"200"
    assert headers["metadata.X-Seen"] == b"1"
    sent = target.seen[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/base/orders/7")
    assert sent["headers"]["X-Token"] == "t"  # type: ignore[index]
    assert "lower" not in sent["headers"]  # type: ignore[operator]

    for op, verb in (("get", "GET"), ("put", "PUT"), ("delete", "DELETE"), ("create", "POST")):
        got = await doors.grpc("api", op, b"x", path="v")
        assert got.metadata["statusCode"] == "200"
        assert target.seen[-1]["method"] == verb


async def test_http_binding_non_2xx_is_an_error_unless_told_otherwise(doors: Doors) -> None:
    resp = await doors.http("api", {"operation": "get", "metadata": {"path": "missing"}})
    assert (resp.status, error_code(resp)) == (500, "ERR_INVOKE_OUTPUT_BINDING")
    assert dict(resp.headers)["metadata.statusCode"] == b"404"  # set even on error
    resp = await doors.http("lenient", {"operation": "get", "metadata": {"path": "missing"}})
    assert resp.status == 200 and resp.body == b"nope"
    assert dict(resp.headers)["metadata.statusCode"] == b"404"


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("nope", {"operation": "get"}, 500, "ERR_INVOKE_OUTPUT_BINDING"),  # unknown binding
        ("files", {"operation": "explode"}, 500, "ERR_INVOKE_OUTPUT_BINDING"),  # unknown op
        ("ticks", {"operation": "get"}, 500, "ERR_INVOKE_OUTPUT_BINDING"),  # input only
        ("files", b"{not json", 400, "ERR_MALFORMED_REQUEST"),
        ("files", [1, 2], 400, "ERR_MALFORMED_REQUEST"),
        ("files", {"operation": "get", "metadata": {"fileName": 3}}, 400, "ERR_MALFORMED_REQUEST"),
    ],
)
async def test_bad_requests_get_daprs_errors_through_both_doors(
    doors: Doors, name: str, body: object, status: int, code: str
) -> None:
    resp = await doors.http(name, body)
    assert (resp.status, error_code(resp)) == (status, code)
    if status == 500:  # the same request over gRPC (malformed JSON has no gRPC twin)
        op = body["operation"] if isinstance(body, dict) else ""
        with pytest.raises(DaprError) as info:
            await doors.grpc(name, str(op))
        assert (info.value.error_code, info.value.grpc_status) == (code, grpc.StatusCode.INTERNAL)
    ok = await doors.http("files", {"operation": "list"})  # still serving
    assert ok.status == 200


async def test_http_binding_sends_its_security_token(doors: Doors, target: Target) -> None:
    resp = await doors.http("secured", {"operation": "get", "metadata": {"path": "p"}})
    assert resp.status == 200
    assert target.seen[-1]["headers"]["X-Api-Key"] == "s3cret"  # type: ignore[index]
