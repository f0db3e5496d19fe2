"""``api_transport: http`` through real Envoys configured by the real control plane.

Topology: Envoy "a" proxies the Dapr HTTP API over HTTP/1.1 to the runtime's real HTTP front
door (``HttpApiServer``) on a Unix socket, with a dispatch that answers whatever status the
path asks for; Envoy "b" has an app behind it; Envoy "dead" names an HTTP socket where
nothing listens. The runtime's answers are upstream responses: Envoy's local-reply mappers
(413, 403, no healthy upstream, …) must never rewrite them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import pytest_asyncio
from envoy_harness import (
    FakeRuntime,
    RecordingApp,
    SidecarHandle,
    eventually,
    start_fake_runtime,
    start_sidecar,
)

from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.http_server import HttpApiServer
from tandem.xds.controlplane import ControlPlane

MAX_BODY = 64 * 1024


@dataclass
class Mesh:
    seen: list[ApiRequest]
    app_b: RecordingApp
    a: SidecarHandle
    dead: SidecarHandle
    client: httpx.AsyncClient


async def _answer(req: ApiRequest) -> ApiResponse:
    """``/v1.0/status/{code}`` answers that status in Dapr's JSON; anything else echoes."""
    parts = req.path.split("/")
    if len(parts) == 4 and parts[2] == "status":
        code = int(parts[3])
        if code == 204:
            return ApiResponse.empty()
        body = {"errorCode": f"ERR_FROM_RUNTIME_{code}", "message": f"runtime said {code}"}
        return ApiResponse.json(body, status=code)
    return ApiResponse(
        body=orjson.dumps(
            {
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "app": req.app_id,
                "size": len(req.body),
                "token": req.headers.get("dapr-api-token"),
            }
        ),
        headers=(("etag", b'"3"'),),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mesh() -> AsyncIterator[Mesh]:
    workdir = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    control_plane = ControlPlane()
    ads_address = await control_plane.start()
    # The gRPC side (dapr_grpc) still names tandem_runtime; nothing here calls it.
    grpc_runtime = await start_fake_runtime(str(workdir / "rt.sock"), FakeRuntime())
    seen: list[ApiRequest] = []

    async def dispatch(req: ApiRequest) -> ApiResponse:
        seen.append(req)
        return await _answer(req)

    http_runtime = HttpApiServer(
        dispatch, app_id="fallback", max_body_bytes=MAX_BODY, socket_path=workdir / "rt-http.sock"
    )
    await http_runtime.start()
    app_b = RecordingApp().start()
    sidecars: list[SidecarHandle] = []
    client = httpx.AsyncClient(timeout=10.0)
    common = {
        "identities": control_plane.identities,
        "ads_address": ads_address,
        "runtime_socket": str(workdir / "rt.sock"),
        "workdir": workdir,
    }
    try:
        a = await start_sidecar(
            "a",
            runtime_http_socket=str(workdir / "rt-http.sock"),
            max_body_bytes=MAX_BODY,
            **common,
        )
        sidecars.append(a)
        b = await start_sidecar("b", app_port=app_b.port, **common)
        sidecars.append(b)
        dead = await start_sidecar(
            "dead", runtime_http_socket=str(workdir / "nobody-home.sock"), **common
        )
        sidecars.append(dead)

        async def b_reachable() -> bool | None:
            reply = await client.get(f"{a.http}/v1.0/invoke/b/method/__ready")
            return True if reply.status_code == 201 else None

        await eventually(b_reachable, what="a's route to b")
        yield Mesh(seen, app_b, a, dead, client)
    finally:
        await client.aclose()
        for sidecar in sidecars:
            await sidecar.envoy.stop()
        await app_b.stop()
        await http_runtime.stop(grace=0)
        await grpc_runtime.stop(None)
        await control_plane.stop(grace=None)
        shutil.rmtree(workdir, ignore_errors=True)


pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_api_request_reaches_the_runtime_over_http_with_the_sidecars_app_id(
    mesh: Mesh,
) -> None:
    reply = await mesh.client.post(
        f"{mesh.a.http}/v1.0/state/store?metadata.ttl=3",
        content=b"[1,2,3]",
        # A client cannot pose as another sidecar: the route overwrites the header.
        headers={"x-tandem-app-id": "mallory"},
    )

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["etag"] == '"3"'
    assert reply.json() == {
        "method": "POST",
        "path": "/v1.0/state/store",
        "query": "metadata.ttl=3",
        "app": "a",
        "size": 7,
        "token": None,
    }


async def test_204_comes_back_without_a_body(mesh: Mesh) -> None:
    reply = await mesh.client.get(f"{mesh.a.http}/v1.0/status/204")

    assert reply.status_code == 204
    assert reply.content == b""


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 409, 413, 500, 501, 502, 503, 504])
async def test_runtime_errors_pass_through_the_local_reply_mappers_verbatim(
    mesh: Mesh, code: int
) -> None:
    reply = await mesh.client.get(f"{mesh.a.http}/v1.0/status/{code}")

    assert reply.status_code == code
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "errorCode": f"ERR_FROM_RUNTIME_{code}",
        "message": f"runtime said {code}",
    }


async def test_body_over_the_limit_gets_the_runtimes_413(mesh: Mesh) -> None:
    before = len(mesh.seen)
    reply = await mesh.client.post(f"{mesh.a.http}/v1.0/state/store", content=b"x" * (MAX_BODY + 1))

    assert reply.status_code == 413
    assert reply.json() == {
        "errorCode": "ERR_REQUEST_TOO_LARGE",
        "message": f"request body exceeds the limit of {MAX_BODY} bytes",
    }
    assert len(mesh.seen) == before


async def test_chunked_body_over_the_limit_gets_413(mesh: Mesh) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * (MAX_BODY // 2)

    reply = await mesh.client.post(f"{mesh.a.http}/v1.0/state/store", content=chunks())

    assert reply.status_code == 413
    assert reply.json()["errorCode"] == "ERR_REQUEST_TOO_LARGE"


async def test_chunked_body_within_the_limit_arrives_whole(mesh: Mesh) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"z" * 1000

    reply = await mesh.client.post(f"{mesh.a.http}/v1.0/state/store", content=chunks())

    assert reply.status_code == 200
    assert reply.json()["size"] == 3000


async def test_invocations_still_go_envoy_to_envoy_and_never_reach_the_runtime(
    mesh: Mesh,
) -> None:
    reply = await mesh.client.post(f"{mesh.a.http}/v1.0/invoke/b/method/private?x=1", content=b"hi")
    unknown = await mesh.client.get(f"{mesh.a.http}/v1.0/invoke/nope/method/private")

    assert reply.status_code == 201
    assert reply.headers["x-tandem-callee"] == "b"
    assert mesh.app_b.find("/private")[-1].body == b"hi"
    assert unknown.status_code == 500
    assert unknown.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert not [r for r in mesh.seen if "private" in r.path]


async def test_runtime_down_is_a_503_in_daprs_json(mesh: Mesh) -> None:
    reply = await mesh.client.get(f"{mesh.dead.http}/v1.0/metadata")

    assert reply.status_code == 503
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"errorCode": "ERR_INTERNAL", "message": "the runtime is not reachable"}


async def test_invocations_do_not_need_the_runtime(mesh: Mesh) -> None:
    # dead's runtime is gone, yet its invocations still go Envoy to Envoy (b answers).
    async def b_known() -> httpx.Response | None:
        reply = await mesh.client.get(f"{mesh.dead.http}/v1.0/invoke/b/method/from-dead")
        return reply if reply.status_code == 201 else None

    reply = await eventually(b_known, what="dead's route to b")

    assert reply.headers["x-tandem-callee"] == "b"
