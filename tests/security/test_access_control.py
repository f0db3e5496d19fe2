"""The callee's accessControl, enforced by its Envoy (RBAC) on the caller's certificate.

Callee b's policy for caller a (default deny):
- ``/orders/**`` deny, but ``/orders/public/*`` allow — a more specific allow inside a
  broader deny;
- ``/admin/**`` allow, but ``/admin/danger`` deny — the reverse;
- ``/items/*`` allow for GET only — another verb falls to the policy's default (deny);
- ``/open`` allow.
Caller d (default allow) is denied ``/admin/**``: the deny must hold whatever the case or
percent-encoding of the path, as Dapr lower-cases rule and request for HTTP apps.
Callers with no policy (c) get the global default: deny.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from secure_mesh import SecureMesh, eventually, secure_mesh

from tandem.xds.ca import spiffe_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

POLICY = {
    "defaultAction": "deny",
    "trustDomain": "public",
    "policies": [
        {
            "appId": "a",
            "defaultAction": "deny",
            "namespace": "default",
            "operations": [
                {"name": "/orders/**", "httpVerb": ["*"], "action": "deny"},
                {"name": "/orders/public/*", "httpVerb": ["*"], "action": "allow"},
                {"name": "/admin/**", "httpVerb": ["*"], "action": "allow"},
                {"name": "/admin/danger", "httpVerb": ["*"], "action": "deny"},
                {"name": "/items/*", "httpVerb": ["GET"], "action": "allow"},
                {"name": "/open", "httpVerb": ["GET", "POST"], "action": "allow"},
            ],
        },
        {
            "appId": "d",
            "defaultAction": "allow",
            "namespace": "default",
            "operations": [{"name": "/admin/**", "httpVerb": ["*"], "action": "deny"}],
        },
    ],
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mesh() -> AsyncIterator[SecureMesh]:
    async with secure_mesh() as m:
        await m.add("a", with_app=False)
        await m.add("b", access_control=POLICY)
        await m.add("c", with_app=False)
        await m.add("d", with_app=False)
        yield m


async def _invoke(mesh: SecureMesh, caller: str, method: str, path: str) -> httpx.Response:
    return await mesh.client.request(
        method, f"{mesh.sidecars[caller].http}/v1.0/invoke/b/method{path}"
    )


async def _wait_routed(mesh: SecureMesh, caller: str) -> None:
    async def routed() -> bool | None:
        reply = await _invoke(mesh, caller, "GET", "/open")
        return True if reply.headers.get("x-tandem-callee") == "b" else None

    await eventually(routed, what=f"{caller}'s route to b")


def _seen_from(mesh: SecureMesh, caller: str) -> int:
    uri = f"URI={spiffe_id('public', 'default', caller)}"
    return sum(uri in r.headers.get("x-forwarded-client-cert", "") for r in mesh.apps["b"].requests)


async def _denied(mesh: SecureMesh, caller: str, method: str, path: str) -> None:
    await _wait_routed(mesh, caller)
    before = _seen_from(mesh, caller)
    reply = await _invoke(mesh, caller, method, path)

    assert reply.status_code == 403, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert body["message"].startswith("failed to invoke, id: b, err: access control policy")
    assert spiffe_id("public", "default", caller) in body["message"]
    assert _seen_from(mesh, caller) == before  # the app never saw it


async def _allowed(mesh: SecureMesh, caller: str, method: str, path: str) -> None:
    await _wait_routed(mesh, caller)
    reply = await _invoke(mesh, caller, method, path)

    assert reply.status_code == 201, reply.text
    assert mesh.apps["b"].find(path)[-1].method == method


async def test_an_allowed_operation_reaches_the_app(mesh: SecureMesh) -> None:
    await _allowed(mesh, "a", "POST", "/open?x=1")


async def test_a_denied_operation_returns_403_and_never_reaches_the_app(
    mesh: SecureMesh,
) -> None:
    await _denied(mesh, "a", "GET", "/orders/42")


async def test_a_more_specific_allow_inside_a_broader_deny_wins(mesh: SecureMesh) -> None:
    await _allowed(mesh, "a", "GET", "/orders/public/menu")
    await _denied(mesh, "a", "GET", "/orders/public/menu/deeper")


async def test_a_more_specific_deny_inside_a_broader_allow_wins(mesh: SecureMesh) -> None:
    await _allowed(mesh, "a", "DELETE", "/admin/users/7")
    await _denied(mesh, "a", "POST", "/admin/danger")


async def test_an_unlisted_verb_on_a_matching_operation_gets_the_policy_default(
    mesh: SecureMesh,
) -> None:
    await _allowed(mesh, "a", "GET", "/items/1")
    await _denied(mesh, "a", "PUT", "/items/2")


async def _raw_status(port: int, path: str) -> int:
    """Send ``path`` byte for byte (HTTP clients would normalise dot segments first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def test_a_path_trick_does_not_slip_past_a_rule(mesh: SecureMesh) -> None:
    await _wait_routed(mesh, "a")
    before = _seen_from(mesh, "a")
    port = mesh.sidecars["a"].http_port
    # Normalised by the callee's Envoy before matching: both are /admin/danger.
    for trick in ("/admin/x/../danger", "//admin//danger", "/admin/%2E%2E/admin/danger"):
        assert await _raw_status(port, f"/v1.0/invoke/b/method{trick}") == 403, trick
    assert _seen_from(mesh, "a") == before


async def test_a_caller_without_a_policy_gets_the_global_default(mesh: SecureMesh) -> None:
    await _denied(mesh, "c", "GET", "/open")


@pytest.mark.parametrize(
    "path", ["/admin/x", "/ADMIN/x", "/Admin/x", "/%41DMIN/x", "/%61dmin/X", "/ADMIN"]
)
async def test_a_deny_holds_whatever_the_case_or_encoding_of_the_path(
    mesh: SecureMesh, path: str
) -> None:
    # An app whose router ignores case must not be reachable around a deny rule.
    await _denied(mesh, "d", "GET", path)


async def test_outside_the_denied_paths_the_default_allow_applies(mesh: SecureMesh) -> None:
    await _allowed(mesh, "d", "GET", "/administrator")


@pytest.mark.parametrize("path", ["/OPEN", "/Orders/Public/Menu", "/%6Fpen"])
async def test_allow_rules_admit_mixed_case_as_dapr_does(mesh: SecureMesh, path: str) -> None:
    await _wait_routed(mesh, "a")
    reply = await _invoke(mesh, "a", "GET", path)

    assert reply.status_code == 201, reply.text
    assert reply.headers.get("x-tandem-callee") == "b"
