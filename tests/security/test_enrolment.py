"""Identity is earned, not claimed: only a sidecar holding a credential minted by
`tandem run` (under the same $TANDEM_HOME) for its node id, app id and key gets a
certificate. Exercised against the real control plane over gRPC, as a rogue process would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from tandem.xds import resource_types as rt
from tandem.xds.ca import csr_public_key, public_key_der, spiffe_id
from tandem.xds.controlplane import ControlPlane
from tandem.xds.enrolment import EnrolmentKey, WorkloadKey

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORTS = {"http_port": 3500, "grpc_port": 50001, "internal_port": 50002}
TOKEN = "token-that-must-never-be-logged"


@pytest_asyncio.fixture(loop_scope="session")
async def control_plane() -> AsyncIterator[ControlPlane]:
    cp = ControlPlane()
    await cp.start()
    yield cp
    await cp.stop(grace=None)


async def _open(
    cp: ControlPlane, node_id: str, metadata: dict[str, Any], names: tuple[str, ...] = ()
) -> list[discovery_pb2.DiscoveryResponse]:
    """Open an ADS stream as ``node_id``; ask for CDS, then for SDS ``names``."""
    struct = struct_pb2.Struct()
    struct.update(metadata)
    node = base_pb2.Node(id=node_id, cluster=str(metadata.get("app_id")), metadata=struct)
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
    requests.put_nowait(discovery_pb2.DiscoveryRequest(node=node, type_url=rt.CLUSTER))
    if names:
        requests.put_nowait(
            discovery_pb2.DiscoveryRequest(type_url=rt.SECRET, resource_names=list(names))
        )

    async def stream() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (request := await requests.get()) is not None:
            yield request

    async with grpc.aio.insecure_channel(cp.address) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.StreamAggregatedResources(stream())
        responses = [await call.read()]
        if names:
            responses.append(await call.read())
        requests.put_nowait(None)
        call.cancel()
    return responses


def _metadata(app_id: str, key: WorkloadKey, credential: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "app_id": app_id,
        **PORTS,
        "csr": key.csr_pem,
        "key_path": "/run/sidecar/workload.key",
        "dapr_api_token": TOKEN,
    }
    if credential is not None:
        out["credential"] = credential
    return out


def _mint(cp: ControlPlane, node_id: str, app_id: str, key: WorkloadKey) -> str:
    return cp.identities.enrolment.mint(
        node_id, spiffe_id("public", "default", app_id), key.csr_pem
    )


async def _refused(cp: ControlPlane, node_id: str, metadata: dict[str, Any]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _open(cp, node_id, metadata)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert cp.registry.mesh().get(node_id) is None
    assert cp.identities.certificate(node_id) is None
    return err.value.details() or ""


async def test_a_node_without_a_credential_is_refused_with_a_readable_reason(
    control_plane: ControlPlane,
) -> None:
    details = await _refused(control_plane, "b~rogue", _metadata("b", WorkloadKey.generate(), None))

    assert "refused a certificate for spiffe://public/ns/default/b" in details
    assert "no enrolment credential" in details
    assert "tandem run" in details


async def test_a_credential_minted_with_another_enrolment_key_is_refused(
    control_plane: ControlPlane,
) -> None:
    key = WorkloadKey.generate()
    forged = EnrolmentKey.generate().mint(
        "b~forged", spiffe_id("public", "default", "b"), key.csr_pem
    )

    details = await _refused(control_plane, "b~forged", _metadata("b", key, forged))

    assert "was not issued for node 'b~forged'" in details
    assert forged.split(".", 1)[1] not in details


async def test_a_credential_for_app_a_cannot_claim_app_b(control_plane: ControlPlane) -> None:
    key = WorkloadKey.generate()
    for_a = _mint(control_plane, "x~1", "a", key)

    await _refused(control_plane, "x~1", _metadata("b", key, for_a))


async def test_a_copied_credential_is_worthless_with_another_key_or_node(
    control_plane: ControlPlane,
) -> None:
    key = WorkloadKey.generate()
    credential = _mint(control_plane, "b~victim", "b", key)

    await _refused(control_plane, "b~victim", _metadata("b", WorkloadKey.generate(), credential))
    await _refused(control_plane, "b~thief", _metadata("b", key, credential))


async def test_a_non_p256_csr_is_refused(control_plane: ControlPlane) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP384R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(other, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    metadata = {**_metadata("b", WorkloadKey.generate(), "v1.x"), "csr": csr}

    details = await _refused(control_plane, "b~p384", metadata)

    assert "ECDSA P-256" in details


async def test_an_enrolled_sidecar_gets_a_certificate_for_its_key_and_never_a_private_key(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = WorkloadKey.generate()
    credential = _mint(control_plane, "b~good", "b", key)

    responses = await _open(
        control_plane, "b~good", _metadata("b", key, credential), names=("default", "ROOTCA")
    )

    secrets = {}
    for packed in responses[-1].resources:
        secret = secret_pb2.Secret()
        packed.Unpack(secret)
        secrets[secret.name] = secret
    default = secrets["default"].tls_certificate
    # The key stays with the sidecar: SDS names its file, carries no key bytes.
    assert default.private_key.filename == "/run/sidecar/workload.key"
    assert not default.private_key.inline_bytes and not default.private_key.inline_string
    leaf = x509.load_pem_x509_certificate(default.certificate_chain.inline_string.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/default/b"
    ]
    assert public_key_der(leaf.public_key()) == public_key_der(csr_public_key(key.csr_pem))  # type: ignore[arg-type]
    root = secrets["ROOTCA"].validation_context.trusted_ca.inline_string
    assert root == control_plane.identities.ca.trust_bundle_pem
    # Nothing secret reached the logs: not the credential, not the token, not the CSR.
    logged = caplog.text
    assert "certificate issued" in logged
    for secret_text in (
        credential,
        credential.split(".", 1)[1],
        TOKEN,
        "BEGIN CERTIFICATE REQUEST",
    ):
        assert secret_text not in logged


async def test_refusals_do_not_log_the_credential(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = WorkloadKey.generate()
    stolen = _mint(control_plane, "b~elsewhere", "b", key)

    await _refused(control_plane, "b~here", _metadata("b", key, stolen))

    assert "stream refused" in caplog.text
    assert stolen.split(".", 1)[1] not in caplog.text
    assert TOKEN not in caplog.text
