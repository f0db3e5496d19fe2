"""API tokens: DAPR_API_TOKEN guards every API call (health excepted), invocation included,
in Envoy; APP_API_TOKEN is what the app sees, never the caller's token.

Topology: caller a (token TOKEN_A, no app) → callee b (token TOKEN_B, app token APP_B);
callee n has an app but no app token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from secure_mesh import SecureMesh, eventually, secure_mesh

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOKEN_A = "caller-token-a"
TOKEN_B = "callee-token-b"
APP_B = "app-token-for-b"
GOOD = {"dapr-api-token": TOKEN_A}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mesh() -> AsyncIterator[SecureMesh]:
    async with secure_mesh() as m:
        await m.add("a", with_app=False, dapr_api_token=TOKEN_A)
        await m.add("b", dapr_api_token=TOKEN_B, app_api_token=APP_B)
        await m.add("n")
        await m.wait_invocable("a", "b", headers=GOOD)
        await m.wait_invocable("a", "n", headers=GOOD)
        yield m


def _url(mesh: SecureMesh, path: str) -> str:
    return f"{mesh.sidecars['a'].http}{path}"


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/state/statestore/k",
        "/v1.0/metadata",
        "/v1.0/invoke/b/method/secret",
        "/v1.0/invoke/nowhere/method/x",
    ],
)
@pytest.mark.parametrize("token", [None, "wrong", TOKEN_B])
async def test_a_missing_or_wrong_token_gets_401_on_api_and_invocation_routes(
    mesh: SecureMesh, path: str, token: str | None
) -> None:
    headers = {"dapr-api-token": token} if token is not None else {}
    seen_by_runtime = len(mesh.runtime.seen)

    reply = await mesh.client.get(_url(mesh, path), headers=headers)

    assert reply.status_code == 401
    assert reply.text == "invalid api token"
    assert len(mesh.runtime.seen) == seen_by_runtime
    assert not mesh.apps["b"].find("/secret")


async def test_the_header_form_of_invocation_needs_the_token_too(mesh: SecureMesh) -> None:
    reply = await mesh.client.get(_url(mesh, "/secret-header"), headers={"dapr-app-id": "b"})

    assert reply.status_code == 401
    assert not mesh.apps["b"].find("/secret-header")


async def test_the_right_token_reaches_the_runtime(mesh: SecureMesh) -> None:
    reply = await mesh.client.get(_url(mesh, "/v1.0/metadata"), headers=GOOD)

    # The fake runtime answers 404 to everything but healthz: it was reached.
    assert reply.status_code == 404
    assert ("a", "GET", "/v1.0/metadata") in mesh.runtime.seen


@pytest.mark.parametrize("path", ["/v1.0/healthz", "/v1.0/healthz/outbound"])
async def test_health_endpoints_stay_open_without_a_token(mesh: SecureMesh, path: str) -> None:
    reply = await mesh.client.get(_url(mesh, path))

    assert reply.status_code != 401
    assert ("a", "GET", path) in mesh.runtime.seen


async def test_the_app_sees_its_app_token_and_never_the_callers_token(mesh: SecureMesh) -> None:
    reply = await mesh.client.post(_url(mesh, "/v1.0/invoke/b/method/orders"), headers=GOOD)

    assert reply.status_code == 201
    seen = mesh.apps["b"].find("/orders")[-1]
    assert seen.headers["dapr-api-token"] == APP_B


async def test_without_an_app_token_the_app_sees_no_token_at_all(mesh: SecureMesh) -> None:
    reply = await mesh.client.get(_url(mesh, "/v1.0/invoke/n/method/plain"), headers=GOOD)

    assert reply.status_code == 201
    assert "dapr-api-token" not in mesh.apps["n"].find("/plain")[-1].headers


async def test_grpc_calls_need_the_token(mesh: SecureMesh) -> None:
    target = f"127.0.0.1:{mesh.sidecars['a'].grpc_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/dapr.proto.runtime.v1.Dapr/GetMetadata")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await call(b"", timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await call(b"", timeout=5, metadata=(("dapr-api-token", "wrong"),))
        with pytest.raises(grpc.aio.AioRpcError) as right:
            await call(b"", timeout=5, metadata=(("dapr-api-token", TOKEN_A),))

    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Past the check, the fake runtime (ext_proc only) answers UNIMPLEMENTED.
    assert right.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_grpc_proxying_needs_the_token_and_strips_it(mesh: SecureMesh) -> None:
    target = f"127.0.0.1:{mesh.sidecars['a'].grpc_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/svc.Echo/Call")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await call(b"", timeout=5, metadata=(("dapr-app-id", "b"),))
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert not mesh.apps["b"].find("/svc.Echo/Call")

        # The recording app speaks HTTP/1 only; what matters is what reached it.
        with pytest.raises(grpc.aio.AioRpcError):
            await call(b"", timeout=5, metadata=(("dapr-app-id", "b"), *GOOD.items()))

    async def reached() -> bool | None:
        return True if mesh.apps["b"].find("/svc.Echo/Call") else None

    await eventually(reached, what="the proxied call to reach b's app")
    assert mesh.apps["b"].find("/svc.Echo/Call")[-1].headers["dapr-api-token"] == APP_B
