"""Mesh model -> Envoy resources for one sidecar. Pure: same input, same protos.

One module per feature (listeners, routes, clusters, endpoints, ext_proc, local replies,
metrics, tls, rbac, auth); this module only assembles them. The output follows ``docs/design/sidecar-contract.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from tandem.xds.ir import Mesh, Sidecar


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything one sidecar's Envoy receives over ADS."""

    listeners: tuple[listener_pb2.Listener, ...]
    routes: tuple[route_pb2.RouteConfiguration, ...]
    clusters: tuple[cluster_pb2.Cluster, ...]
    endpoints: tuple[endpoint_pb2.ClusterLoadAssignment, ...]
    secrets: tuple[secret_pb2.Secret, ...] = ()

    def all(self) -> Iterator[Message]:
        yield from self.secrets
        yield from self.clusters
        yield from self.endpoints
        yield from self.listeners
        yield from self.routes


def translate(sidecar: Sidecar, mesh: Mesh) -> Resources:
    """Resources for ``sidecar``, given every live sidecar in ``mesh``.

    The sidecar itself counts as a known app whether or not ``mesh`` lists it, so a lone
    sidecar can invoke its own app.
    """
    # Imported here: the runtime imports a few of this package's modules (the warnings of
    # what Envoy cannot apply) and need not load every filter's protos with them.
    from tandem.xds.translate import clusters, endpoints, listeners, metrics, routes, tls, tracing

    if mesh.get(sidecar.node_id) is None:
        mesh = Mesh.of((*mesh.sidecars, sidecar), mesh.security)
    metrics_listener = metrics.metrics_listener(sidecar)
    admin_cluster = metrics.admin_cluster(sidecar)
    collector = tracing.collector_cluster(sidecar)
    return Resources(
        listeners=(
            *listeners.listeners(sidecar, mesh),
            *((metrics_listener,) if metrics_listener is not None else ()),
        ),
        routes=tuple(routes.route_configs(sidecar, mesh)),
        clusters=(
            *clusters.clusters(sidecar, mesh),
            *((admin_cluster,) if admin_cluster is not None else ()),
            *((collector,) if collector is not None else ()),
        ),
        endpoints=tuple(endpoints.load_assignments(mesh)),
        secrets=tuple(tls.secrets(sidecar, mesh)),
    )


__all__ = ["Resources", "translate"]
