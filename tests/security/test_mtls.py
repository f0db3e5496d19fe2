"""mTLS between sidecars, on by default: who the inbound listener lets in, and whom a caller
accepts as the callee. Real Envoys, real TLS, certificates from the control plane's CA."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from secure_mesh import SecureMesh, eventually, secure_mesh

from tandem.xds.ca import spiffe_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

# b lets only a in (its own access control); c is a valid mesh member all the same.
ONLY_A = {
    "defaultAction": "deny",
    "policies": [{"appId": "a", "defaultAction": "allow", "namespace": "default"}],
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mesh() -> AsyncIterator[SecureMesh]:
    async with secure_mesh() as m:
        await m.add("a", with_app=False)
        await m.add("b", access_control=ONLY_A)
        await m.wait_invocable("a", "b")
        yield m


async def _refused(mesh: SecureMesh, client: httpx.AsyncClient, path: str) -> None:
    # Under TLS 1.3 the server's refusal of the client certificate arrives after the client
    # thinks the handshake is done; depending on timing httpx reports it wrapped or as the
    # raw ssl.SSLError. Either way the connection was refused.
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        await client.get(f"{mesh.inbound('b')}{path}")
    assert not mesh.apps["b"].find(path)


async def test_the_right_peer_is_served_over_mtls(mesh: SecureMesh) -> None:
    reply = await mesh.client.get(f"{mesh.sidecars['a'].http}/v1.0/invoke/b/method/hello")

    assert reply.status_code == 201
    seen = mesh.apps["b"].find("/hello")[-1]
    # The callee's Envoy passes on the verified caller identity from the certificate.
    assert f"URI={spiffe_id('public', 'default', 'a')}" in seen.headers["x-forwarded-client-cert"]
    stats = await mesh.sidecars["a"].envoy.stats(r"^cluster\.app_b\.ssl\.handshake$")
    assert stats["cluster.app_b.ssl.handshake"] >= 1


async def test_a_client_without_a_certificate_is_refused_at_the_inbound_listener(
    mesh: SecureMesh,
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as client:
        await _refused(mesh, client, "/no-cert")


async def test_a_self_signed_certificate_is_refused_at_the_inbound_listener(
    mesh: SecureMesh,
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context(certificate="self-signed")) as client:
        await _refused(mesh, client, "/self-signed")


async def test_plain_http_is_refused_at_the_inbound_listener(mesh: SecureMesh) -> None:
    port = mesh.sidecars["b"].internal_port
    with pytest.raises(httpx.TransportError):
        await mesh.client.get(f"http://127.0.0.1:{port}/plain")
    assert not mesh.apps["b"].find("/plain")


async def test_a_valid_certificate_for_another_app_id_is_refused_even_when_it_claims_the_caller_header(
    mesh: SecureMesh,
) -> None:
    context = mesh.tls_context(certificate=spiffe_id("public", "default", "c"))
    async with httpx.AsyncClient(verify=context) as client:
        reply = await client.get(f"{mesh.inbound('b')}/as-c", headers={"dapr-caller-app-id": "a"})

    assert reply.status_code == 403
    assert reply.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert not mesh.apps["b"].find("/as-c")


async def test_a_valid_certificate_for_the_allowed_app_id_is_served(mesh: SecureMesh) -> None:
    context = mesh.tls_context(certificate=spiffe_id("public", "default", "a"))
    async with httpx.AsyncClient(verify=context) as client:
        reply = await client.get(f"{mesh.inbound('b')}/as-a")

    assert reply.status_code == 201
    assert mesh.apps["b"].find("/as-a")


async def test_a_caller_refuses_a_callee_presenting_another_apps_certificate(
    mesh: SecureMesh,
) -> None:
    # A second "instance of b" whose port is served by a holder of c's valid certificate:
    # a's cluster for b accepts only b's SPIFFE id, so no request ever reaches it.
    cert, key = mesh.mesh_certificate(spiffe_id("public", "default", "c"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            requests.append(await reader.read(1024))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    a = mesh.sidecars["a"]
    try:
        async with mesh.announced("b", port):

            async def two_b_endpoints() -> bool | None:
                stats = await a.envoy.stats(r"^cluster\.app_b\.membership_total$")
                return True if stats.get("cluster.app_b.membership_total") == 2 else None

            await eventually(two_b_endpoints, what="a to see the second instance of b")

            async def refused_by_san() -> bool | None:
                await mesh.client.get(f"{a.http}/v1.0/invoke/b/method/who")
                stats = await a.envoy.stats(r"^cluster\.app_b\.ssl\.fail_verify_san$")
                return True if stats["cluster.app_b.ssl.fail_verify_san"] > 0 else None

            # Round robin: within a few calls one goes to the impostor and is refused.
            await eventually(refused_by_san, what="a to refuse c's certificate for b")
    finally:
        server.close()
        await server.wait_closed()
    assert not [r for r in requests if r]
