"""Service invocation through real Envoys configured by the real control plane.

Topology: control plane (in-process) ─ADS─▶ Envoy "a" (no app) and Envoy "b" (app behind it);
a fake runtime on a Unix socket answers ext_proc. a → b goes Envoy → Envoy → app.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from envoy_harness import (
    FakeRuntime,
    RecordingApp,
    SidecarHandle,
    eventually,
    free_port,
    start_fake_runtime,
    start_sidecar,
)

from tandem.xds.controlplane import ControlPlane

MAX_BODY = 64 * 1024


@dataclass
class Mesh:
    control_plane: ControlPlane
    runtime: FakeRuntime
    runtime_socket: str
    app_b: RecordingApp
    a: SidecarHandle
    b: SidecarHandle
    workdir: Path
    client: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mesh() -> AsyncIterator[Mesh]:
    workdir = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    control_plane = ControlPlane()
    ads_address = await control_plane.start()
    runtime = FakeRuntime()
    runtime_socket = str(workdir / "rt.sock")
    runtime_server = await start_fake_runtime(runtime_socket, runtime)
    app_b = RecordingApp().start()
    sidecars: list[SidecarHandle] = []
    client = httpx.AsyncClient(timeout=10.0)
    try:
        a = await start_sidecar(
            "a",
            identities=control_plane.identities,
            ads_address=ads_address,
            runtime_socket=runtime_socket,
            workdir=workdir,
            max_body_bytes=MAX_BODY,
        )
        sidecars.append(a)
        b = await start_sidecar(
            "b",
            identities=control_plane.identities,
            ads_address=ads_address,
            runtime_socket=runtime_socket,
            workdir=workdir,
            app_port=app_b.port,
        )
        sidecars.append(b)

        # a learned about b once an invocation reaches b's app.
        async def b_reachable() -> bool | None:
            reply = await client.get(f"{a.http}/v1.0/invoke/b/method/__ready")
            return True if reply.status_code == 201 else None

        await eventually(b_reachable, what="a's route to b")
        yield Mesh(control_plane, runtime, runtime_socket, app_b, a, b, workdir, client)
    finally:
        await client.aclose()
        for sidecar in sidecars:
            await sidecar.envoy.stop()
        await app_b.stop()
        await runtime_server.stop(None)
        await control_plane.stop(grace=None)
        shutil.rmtree(workdir, ignore_errors=True)


pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_invoke_post_reaches_app_with_method_path_query_headers_and_body(mesh: Mesh) -> None:
    reply = await mesh.client.post(
        f"{mesh.a.http}/v1.0/invoke/b/method/hello?x=1",
        content=b'{"n": 42}',
        headers={"content-type": "application/json", "x-custom": "kept"},
    )

    seen = mesh.app_b.find("/hello")[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/hello?x=1", b'{"n": 42}')
    assert seen.headers["x-custom"] == "kept"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["dapr-caller-app-id"] == "a"
    assert seen.headers["dapr-callee-app-id"] == "b"
    # The app's answer comes back verbatim.
    assert reply.status_code == 201
    assert reply.headers["x-app-header"] == "from-app"
    assert reply.headers["content-type"] == "text/x-app"
    assert reply.content == b"app saw POST /hello?x=1"


async def test_invoke_response_proves_the_envoy_to_envoy_hop(mesh: Mesh) -> None:
    reply = await mesh.client.get(f"{mesh.a.http}/v1.0/invoke/b/method/hop")

    assert reply.status_code == 201
    assert reply.headers["x-tandem-callee"] == "b"


async def test_dapr_app_id_header_invokes_the_app_and_is_removed(mesh: Mesh) -> None:
    reply = await mesh.client.put(
        f"{mesh.a.http}/orders/7?q=z", content=b"body", headers={"dapr-app-id": "b"}
    )

    assert reply.status_code == 201
    seen = mesh.app_b.find("/orders/7")[-1]
    assert (seen.method, seen.path, seen.body) == ("PUT", "/orders/7?q=z", b"body")
    assert "dapr-app-id" not in seen.headers
    assert seen.headers["dapr-callee-app-id"] == "b"


async def test_unknown_app_in_path_gives_500_err_direct_invoke(mesh: Mesh) -> None:
    reply = await mesh.client.get(f"{mesh.a.http}/v1.0/invoke/nope/method/x")

    assert reply.status_code == 500
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "couldn't find service" in body["message"]
    assert (
        body["message"]
        == "failed to invoke, err: couldn't find service for /v1.0/invoke/nope/method/x"
    )


async def test_unknown_app_in_header_names_the_app(mesh: Mesh) -> None:
    reply = await mesh.client.get(f"{mesh.a.http}/x", headers={"dapr-app-id": "nope"})

    assert reply.status_code == 500
    assert reply.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: nope, err: couldn't find service: nope",
    }


async def test_invocation_is_counted_on_caller_cluster_and_callee_inbound(mesh: Mesh) -> None:
    # Envoy turns the ':' of cluster "app:b" into '_' in stat names.
    before_a = await mesh.a.envoy.stats(r"^cluster\.app_b\.upstream_rq_total$")
    before_b = await mesh.b.envoy.stats(r"^http\.dapr_inbound\.downstream_rq_total$")

    reply = await mesh.client.get(f"{mesh.a.http}/v1.0/invoke/b/method/count")
    assert reply.status_code == 201

    async def counted() -> bool | None:
        after_a = await mesh.a.envoy.stats(r"^cluster\.app_b\.upstream_rq_total$")
        after_b = await mesh.b.envoy.stats(r"^http\.dapr_inbound\.downstream_rq_total$")
        key_a, key_b = "cluster.app_b.upstream_rq_total", "http.dapr_inbound.downstream_rq_total"
        grew = after_a[key_a] > before_a.get(key_a, 0) and after_b[key_b] > before_b.get(key_b, 0)
        return True if grew else None

    # Envoy flushes counters to the admin view asynchronously, hence the poll.
    await eventually(counted, what="stats for the invocation")


async def test_healthz_is_answered_by_the_runtime_through_ext_proc(mesh: Mesh) -> None:
    reply = await mesh.client.get(f"{mesh.a.http}/v1.0/healthz")

    assert reply.status_code == 204
    assert ("a", "GET", "/v1.0/healthz") in mesh.runtime.seen


async def test_invocations_never_reach_the_runtime(mesh: Mesh) -> None:
    await mesh.client.get(f"{mesh.a.http}/v1.0/invoke/b/method/private")
    await mesh.client.get(f"{mesh.a.http}/v1.0/invoke/nope/method/private")

    assert not [path for _, _, path in mesh.runtime.seen if "private" in path]


async def test_body_over_max_body_bytes_gets_413_with_dapr_json(mesh: Mesh) -> None:
    reply = await mesh.client.post(f"{mesh.a.http}/v1.0/state/store", content=b"x" * (MAX_BODY * 2))

    assert reply.status_code == 413
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["errorCode"] == "ERR_REQUEST_TOO_LARGE"


async def test_runtime_answers_pass_through_the_local_reply_mappers(mesh: Mesh) -> None:
    reply = await mesh.client.post(f"{mesh.a.http}/v1.0/state/store", content=b"[]")

    assert reply.status_code == 404
    assert reply.json() == {"errorCode": "ERR_NOT_FOUND", "message": "fake runtime"}


async def test_joining_app_gets_a_route_and_leaving_app_loses_it(mesh: Mesh) -> None:
    # c announces an app port where nothing listens: its own Envoy answers the connect
    # failure, in Dapr's JSON, and marks the hop.
    c = await start_sidecar(
        "c",
        identities=mesh.control_plane.identities,
        ads_address=mesh.control_plane.address,
        runtime_socket=mesh.runtime_socket,
        workdir=mesh.workdir,
        app_port=free_port(),
    )
    url = f"{mesh.a.http}/v1.0/invoke/c/method/x"
    try:

        async def c_known() -> httpx.Response | None:
            reply = await mesh.client.get(url)
            return reply if reply.headers.get("x-tandem-callee") == "c" else None

        reply = await eventually(c_known, what="a's route to c")
        assert reply.status_code == 500
        assert reply.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: c, err: upstream connect error",
        }
    finally:
        await c.envoy.stop()

    # The unknown-app answer (not the NC mapper's, which would mean the route were still
    # there without its cluster) proves that a's route to c is gone.
    forgotten = {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, err: couldn't find service for /v1.0/invoke/c/method/x",
    }

    async def c_forgotten() -> httpx.Response | None:
        reply = await mesh.client.get(url)
        return reply if reply.json() == forgotten else None

    reply = await eventually(c_forgotten, what="a to forget c")
    assert reply.status_code == 500
    assert "x-tandem-callee" not in reply.headers


async def test_grpc_port_without_app_id_goes_to_the_runtime(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.a.grpc_port}") as channel:
        call = channel.unary_unary("/dapr.proto.runtime.v1.Dapr/GetMetadata")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"", timeout=5)
    # The fake runtime serves ext_proc only, so reaching it means UNIMPLEMENTED.
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_control_plane_saw_no_nacks(mesh: Mesh) -> None:
    counters = mesh.control_plane.ads.counters()

    assert counters.nacks == 0
    assert counters.acks > 0


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
    caller = dict(context.invocation_metadata() or ()).get("dapr-caller-app-id", "")
    return b"echo:" + request + b" from " + str(caller).encode()


async def test_grpc_proxying_by_dapr_app_id_reaches_a_grpc_app(mesh: Mesh) -> None:
    app = grpc.aio.server()
    app.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(_echo)}
            ),
        )
    )
    port = app.add_insecure_port("127.0.0.1:0")
    await app.start()
    g = await start_sidecar(
        "g",
        identities=mesh.control_plane.identities,
        ads_address=mesh.control_plane.address,
        runtime_socket=mesh.runtime_socket,
        workdir=mesh.workdir,
        app_port=port,
        app_protocol="grpc",
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.a.grpc_port}") as channel:
            say = channel.unary_unary("/test.Echo/Say")

            async def proxied() -> tuple[bytes, dict[str, str]] | None:
                call = say(b"hi", metadata=(("dapr-app-id", "g"),), timeout=5)
                try:
                    reply = await call
                except grpc.aio.AioRpcError:
                    return None  # a has not learned about g yet
                headers = {k: str(v) for k, v in (await call.initial_metadata() or ())}
                return reply, headers

            reply, headers = await eventually(proxied, what="gRPC proxying a -> g")
        assert reply == b"echo:hi from a"
        assert headers["x-tandem-callee"] == "g"
    finally:
        await g.envoy.stop()
        await app.stop(None)
