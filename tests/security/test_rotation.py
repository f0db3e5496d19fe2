"""Certificate rotation at half-life under continuous traffic: zero failed requests.

Certificates live 2 s here, so the control plane re-signs every sidecar's about once a
second and pushes it as a new SDS ``default`` version; invocations a → b keep flowing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl

import httpx
import pytest
from cryptography import x509
from secure_mesh import SecureMesh, eventually, secure_mesh

from tandem.xds.ca import spiffe_id
from tandem.xds.identity import MtlsSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

TTL = dt.timedelta(seconds=2)


async def _served_serial(mesh: SecureMesh, app_id: str) -> int:
    """Serial of the certificate b's inbound listener presents on a fresh handshake."""
    context = mesh.tls_context(certificate=spiffe_id("public", "default", "probe"))
    port = mesh.sidecars[app_id].internal_port
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    transport_ssl = writer.get_extra_info("ssl_object")
    assert isinstance(transport_ssl, ssl.SSLObject)
    der = transport_ssl.getpeercert(binary_form=True)
    writer.close()
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_rotation_under_continuous_traffic_fails_no_request() -> None:
    async with secure_mesh(MtlsSettings(workload_cert_ttl=TTL)) as mesh:
        await mesh.add("a", with_app=False)
        await mesh.add("b")
        await mesh.wait_invocable("a", "b")
        a = mesh.sidecars["a"]
        url = f"{a.http}/v1.0/invoke/b/method/tick"
        first_serial = await _served_serial(mesh, "b")
        statuses: list[int] = []
        serials = {first_serial}
        stop = asyncio.Event()

        async def steady(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                statuses.append((await client.get(url)).status_code)

        async def growing(client: httpx.AsyncClient) -> None:
            # Ever wider bursts make a's Envoy open new connections to b all along, so new
            # handshakes happen with whatever certificates are current.
            width = 1
            while not stop.is_set():
                replies = await asyncio.gather(*(client.get(url) for _ in range(width)))
                statuses.extend(r.status_code for r in replies)
                width = min(width + 1, 24)

        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=64)) as client:
            workers = [
                asyncio.create_task(steady(client)),
                asyncio.create_task(steady(client)),
                asyncio.create_task(growing(client)),
            ]

            async def rotated_twice() -> bool | None:
                serials.add(await _served_serial(mesh, "b"))
                return True if len(serials) >= 3 else None

            try:
                await eventually(rotated_twice, timeout=15, what="two rotations of b's certificate")
                stop.set()
                await asyncio.gather(*workers)
            finally:
                stop.set()
                for worker in workers:
                    worker.cancel()

        assert len(statuses) > 50
        assert set(statuses) == {201}, {s: statuses.count(s) for s in set(statuses)}
        # b saw a's client certificate change too (XFCC Hash = the peer certificate's hash).
        client_certificates = {
            part
            for request in mesh.apps["b"].find("/tick")
            for part in request.headers["x-forwarded-client-cert"].split(";")
            if part.startswith("Hash=")
        }
        assert len(client_certificates) >= 2
