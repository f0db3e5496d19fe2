"""``bindings.http`` with mutual TLS: the component's ``MTLSRootCA``, ``MTLSClientCert`` and
``MTLSClientKey`` (inline PEM or files) reach a local HTTPS server that requires a client
certificate; without them the call fails."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tandem.blocks.bindings.service import BindingsService, InvokeFailedError
from tandem.blocks.registry import ComponentContext, ComponentSpec


@dataclass
class Pem:
    cert: str
    key: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *, server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _pem(pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> Pem:
    cert, key = pair
    return Pem(
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


@dataclass
class Pki:
    ca: Pem
    client: Pem
    url: str


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Pki]:
    ca = _issue("test ca", None)
    srv, client = _pem(_issue("server", ca, server=True)), _pem(_issue("client", ca))
    ca_pem = _pem(ca)
    (tmp_path / "ca.pem").write_text(ca_pem.cert)
    (tmp_path / "srv.pem").write_text(srv.cert)
    (tmp_path / "srv.key").write_text(srv.key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        return web.json_response({"client": subject.get("commonName", "")})

    app = web.Application()
    app.router.add_get("/who", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Pki(ca_pem, client, f"https://127.0.0.1:{port}")
    await runner.cleanup()


async def test_mtls_with_inline_pem_and_files(server: Pki, tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text(server.client.cert)
    (tmp_path / "client.key").write_text(server.client.key)
    specs = [
        ComponentSpec(
            "inline",
            "bindings.http",
            metadata={
                "url": server.url,
                "MTLSRootCA": server.ca.cert,
                "MTLSClientCert": server.client.cert,
                "MTLSClientKey": server.client.key,
            },
        ),
        ComponentSpec(
            "files",
            "bindings.http",
            metadata={
                "url": server.url,
                "MTLSRootCA": server.ca.cert,
                "MTLSClientCert": str(tmp_path / "client.pem"),
                "MTLSClientKey": str(tmp_path / "client.key"),
            },
        ),
        ComponentSpec("no-client-cert", "bindings.http", metadata={"url": server.url, "MTLSRootCA": server.ca.cert}),
    ]  # fmt: skip
    svc = BindingsService.from_specs(specs, ComponentContext(app_id="app", home=tmp_path))
    try:
        for name in ("inline", "files"):
            resp = await svc.invoke(name, "get", b"", {"path": "who"})
            assert resp.data == b'{"client": "client"}'
        with pytest.raises(InvokeFailedError):
            await svc.invoke("no-client-cert", "get", b"", {"path": "who"})
    finally:
        await svc.close()
