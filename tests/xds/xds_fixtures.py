"""Small builders shared by the xds unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from tandem.xds import resource_types as rt
from tandem.xds.ca import spiffe_id
from tandem.xds.cache import Snapshot
from tandem.xds.enrolment import WorkloadKey
from tandem.xds.identity import Identities
from tandem.xds.ir import DEFAULT_NAMESPACE, DEFAULT_TRUST_DOMAIN, Mesh, Sidecar
from tandem.xds.translate import translate

_PORTS = {"a": 3500, "b": 3510, "c": 3520}


def metadata(app_id: str, **extra: Any) -> dict[str, Any]:
    base = _PORTS.get(app_id, 3600)
    return {
        "app_id": app_id,
        "http_port": base,
        "grpc_port": base + 46501,
        "internal_port": base + 46502,
        **extra,
    }


def sidecar(app_id: str, node_id: str | None = None, **extra: Any) -> Sidecar:
    return Sidecar.from_node_metadata(node_id or f"{app_id}~1", metadata(app_id, **extra))


def enrolment(identities: Identities, app_id: str, node_id: str, **extra: Any) -> dict[str, Any]:
    """What `tandem run` adds to the node metadata: a CSR, a credential and the key path."""
    key = WorkloadKey.generate()
    spiffe = spiffe_id(
        extra.get("trust_domain", DEFAULT_TRUST_DOMAIN),
        extra.get("namespace", DEFAULT_NAMESPACE),
        app_id,
    )
    return {
        "csr": key.csr_pem,
        "credential": identities.enrolment.mint(node_id, spiffe, key.csr_pem),
        "key_path": f"/tmp/{node_id}.key",
    }


def node(
    app_id: str, node_id: str | None = None, *, identities: Identities, **extra: Any
) -> base_pb2.Node:
    """A node as an enrolled Envoy announces itself."""
    node_id = node_id or f"{app_id}~1"
    meta = struct_pb2.Struct()
    meta.update({**metadata(app_id, **extra), **enrolment(identities, app_id, node_id, **extra)})
    return base_pb2.Node(id=node_id, cluster=app_id, metadata=meta)


def snapshot_for(target: Sidecar, *others: Sidecar) -> Snapshot:
    return Snapshot.build(translate(target, Mesh.of((target, *others))).all())


def request(
    type_url: str,
    *,
    names: tuple[str, ...] = (),
    nonce: str = "",
    version: str = "",
    nack: str | None = None,
    node_: base_pb2.Node | None = None,
) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), response_nonce=nonce, version_info=version
    )
    if nack is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=nack))
    if node_ is not None:
        req.node.CopyFrom(node_)
    return req


_MESSAGES = (
    cluster_pb2.Cluster,
    endpoint_pb2.ClusterLoadAssignment,
    listener_pb2.Listener,
    route_pb2.RouteConfiguration,
    secret_pb2.Secret,
)


def names_in(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    """Names of the resources in a response, in order."""
    out = []
    for packed in response.resources:
        for message_type in _MESSAGES:
            if packed.Is(message_type.DESCRIPTOR):
                message = message_type()
                packed.Unpack(message)
                out.append(rt.resource_name(message))
    return out


async def eventually(probe: Callable[[], bool], *, timeout: float = 5.0, what: str = "") -> None:
    """Poll ``probe`` until it is true, failing at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not probe():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        await asyncio.sleep(0.01)
