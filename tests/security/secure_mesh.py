"""A mesh of real Envoys under an in-process control plane, plus TLS clients that play
callers with chosen certificates. No sleeps: every wait polls against a deadline."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy_harness import (
    FakeRuntime,
    RecordingApp,
    SidecarHandle,
    enrol,
    eventually,
    free_port,
    start_fake_runtime,
    start_sidecar,
)
from google.protobuf import struct_pb2

from tandem.xds import resource_types as rt
from tandem.xds.ca import CertificateAuthority, csr_public_key, spiffe_id
from tandem.xds.controlplane import ControlPlane
from tandem.xds.enrolment import WorkloadKey
from tandem.xds.identity import Identities, MtlsSettings


@dataclass
class SecureMesh:
    control_plane: ControlPlane
    runtime: FakeRuntime
    runtime_socket: str
    workdir: Path
    client: httpx.AsyncClient
    sidecars: dict[str, SidecarHandle] = field(default_factory=dict)
    apps: dict[str, RecordingApp] = field(default_factory=dict)

    async def add(self, app_id: str, *, with_app: bool = True, **metadata: Any) -> SidecarHandle:
        """A sidecar (enrolled like `tandem run` does), with a recording app behind it."""
        app = RecordingApp().start() if with_app else None
        if app is not None:
            self.apps[app_id] = app
        sidecar = await start_sidecar(
            app_id,
            identities=self.control_plane.identities,
            ads_address=self.control_plane.address,
            runtime_socket=self.runtime_socket,
            workdir=self.workdir,
            app_port=app.port if app is not None else None,
            extra_metadata=metadata,
        )
        self.sidecars[app_id] = sidecar
        return sidecar

    async def wait_invocable(
        self, caller: str, callee: str, headers: dict[str, str] | None = None
    ) -> None:
        """Until caller's Envoy routes to callee over mTLS and callee's app answers."""
        url = f"{self.sidecars[caller].http}/v1.0/invoke/{callee}/method/__ready"

        async def ready() -> bool | None:
            reply = await self.client.get(url, headers=headers)
            return True if reply.headers.get("x-tandem-callee") == callee else None

        await eventually(ready, what=f"{caller} to reach {callee}")

    # --- callers with chosen certificates ---------------------------------------------

    def _files(self, name: str, key: WorkloadKey, cert_pem: str) -> tuple[Path, Path]:
        key_path = self.workdir / f"{name}.key"
        key.write_key(key_path)
        cert_path = self.workdir / f"{name}.pem"
        cert_path.write_text(cert_pem)
        return cert_path, key_path

    def tls_context(self, *, certificate: str | None = None) -> ssl.SSLContext:
        """A TLS client trusting the mesh root; ``certificate`` is a SPIFFE id to hold a
        valid mesh certificate for, ``"self-signed"`` for a foreign one, None for none."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # SVIDs carry a URI SAN, no host name
        context.load_verify_locations(cadata=self.control_plane.identities.ca.trust_bundle_pem)
        if certificate is not None:
            key = WorkloadKey.generate()
            issuer = (
                CertificateAuthority.generate()
                if certificate == "self-signed"
                else self.control_plane.identities.ca
            )
            spiffe = (
                spiffe_id("public", "default", "intruder")
                if certificate == "self-signed"
                else certificate
            )
            leaf = issuer.sign(csr_public_key(key.csr_pem), spiffe)
            name = certificate.rsplit("/", 1)[-1]
            cert_path, key_path = self._files(f"client-{name}", key, leaf.certificate_pem)
            context.load_cert_chain(cert_path, key_path)
        return context

    def inbound(self, app_id: str) -> str:
        return f"https://127.0.0.1:{self.sidecars[app_id].internal_port}"

    def mesh_certificate(self, spiffe: str) -> tuple[Path, Path]:
        """Files of a valid mesh certificate (and its key) for ``spiffe``."""
        key = WorkloadKey.generate()
        leaf = self.control_plane.identities.ca.sign(csr_public_key(key.csr_pem), spiffe)
        return self._files(f"server-{spiffe.rsplit('/', 1)[-1]}", key, leaf.certificate_pem)

    @asynccontextmanager
    async def announced(self, app_id: str, internal_port: int) -> AsyncIterator[None]:
        """A properly enrolled ADS stream that announces ``app_id`` at ``internal_port``
        (nothing but the stream: whatever listens on that port is up to the test)."""
        node_id = f"{app_id}~announced"
        metadata = struct_pb2.Struct()
        metadata.update(
            {
                "app_id": app_id,
                "http_port": free_port(),
                "grpc_port": free_port(),
                "internal_port": internal_port,
                **enrol(self.control_plane.identities, node_id, app_id, self.workdir),
            }
        )
        first = discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=node_id, cluster=app_id, metadata=metadata),
            type_url=rt.CLUSTER,
        )
        outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        outbox.put_nowait(first)

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            while (request := await outbox.get()) is not None:
                yield request

        async with grpc.aio.insecure_channel(self.control_plane.address) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)  # type: ignore[no-untyped-call]
            call = stub.StreamAggregatedResources(requests())
            await call.read()  # admitted: the first response arrived
            try:
                yield
            finally:
                outbox.put_nowait(None)
                call.cancel()


@asynccontextmanager
async def secure_mesh(settings: MtlsSettings | None = None) -> AsyncIterator[SecureMesh]:
    workdir = Path(tempfile.mkdtemp(prefix="ts", dir="/tmp"))
    control_plane = ControlPlane(identities=Identities.ephemeral(settings))
    await control_plane.start()
    runtime = FakeRuntime()
    runtime_socket = str(workdir / "rt.sock")
    runtime_server = await start_fake_runtime(runtime_socket, runtime)
    client = httpx.AsyncClient(timeout=10.0)
    mesh = SecureMesh(control_plane, runtime, runtime_socket, workdir, client)
    try:
        yield mesh
    finally:
        await client.aclose()
        for sidecar in mesh.sidecars.values():
            await sidecar.envoy.stop()
        for app in mesh.apps.values():
            await app.stop()
        await runtime_server.stop(None)
        await control_plane.stop(grace=None)
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["SecureMesh", "eventually", "secure_mesh"]
