"""Actor calls between sidecars: from the caller's runtime to the owner's runtime, through
both Envoys and the mesh's mTLS, never a side channel.

- Listener ``actor_forward`` (with ``actor_forward_socket``) on a Unix socket in the run
  directory: the runtime names the owner's cluster in ``x-tandem-actor-cluster`` and Envoy
  routes by it (a cluster the mesh does not know answers 503; the runtime retries after
  its placement table moves on).
- Cluster ``actorhost|<node id>`` per other sidecar: its inbound listener, with the same
  upstream TLS as ``app:<id>`` (the callee proves its app's SPIFFE id).
- On the owner's inbound listener, ``/_tandem/actors/`` goes to its runtime's HTTP door,
  with access control switched off for that route: Dapr does not apply ``accessControl`` to
  actor calls, and mTLS still requires a mesh identity.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2

from tandem.xds.contract import ACTOR_CLUSTER_HEADER, ACTOR_INBOUND_PREFIX, actor_host_cluster
from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import tls
from tandem.xds.translate._protos import (
    HPO_KEY,
    downstream_protocol_options,
    pack,
    seconds,
    socket_address,
)
from tandem.xds.translate.names import RUNTIME_HTTP_CLUSTER
from tandem.xds.translate.pipes import runtime_pipe_listener
from tandem.xds.translate.rbac import RBAC_FILTER

ACTOR_FORWARD = "actor_forward"
CLUSTER_HEADER = ACTOR_CLUSTER_HEADER
INBOUND_PREFIX = ACTOR_INBOUND_PREFIX
CONNECT_TIMEOUT_SECONDS = 3


host_cluster_name = actor_host_cluster


def host_clusters(sidecar: Sidecar, mesh: Mesh) -> list[cluster_pb2.Cluster]:
    """One cluster per other sidecar, for a runtime that forwards actor calls."""
    if sidecar.actor_forward_socket is None:
        return []
    out = []
    for other in mesh.sidecars:
        if other.node_id == sidecar.node_id:
            continue
        name = host_cluster_name(other.node_id)
        endpoint = endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=socket_address(other.internal_address, other.internal_port)
            )
        )
        cluster = cluster_pb2.Cluster(
            name=name,
            type=cluster_pb2.Cluster.STATIC,
            connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
            load_assignment=endpoint_pb2.ClusterLoadAssignment(
                cluster_name=name,
                endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
            ),
            typed_extension_protocol_options={HPO_KEY: pack(downstream_protocol_options())},
        )
        transport = tls.upstream_transport_socket(mesh, other.app_id)
        if transport is not None:
            cluster.transport_socket.CopyFrom(transport)
        out.append(cluster)
    return out


def forward_listener(sidecar: Sidecar) -> listener_pb2.Listener | None:
    if sidecar.actor_forward_socket is None:
        return None
    route = rc.Route(
        name="actor-forward",
        match=rc.RouteMatch(prefix=INBOUND_PREFIX),
        # The runtime sets its own deadline per call (a turn may queue behind others).
        route=rc.RouteAction(cluster_header=CLUSTER_HEADER, timeout=seconds(0)),
    )
    return runtime_pipe_listener(ACTOR_FORWARD, sidecar.actor_forward_socket, route)


def inbound_routes(sidecar: Sidecar) -> list[rc.Route]:
    """The owner's side: forwarded actor calls reach its runtime, not its app."""
    if sidecar.actor_forward_socket is None:
        return []
    return [
        rc.Route(
            name="actor-calls",
            match=rc.RouteMatch(prefix=INBOUND_PREFIX),
            route=rc.RouteAction(cluster=RUNTIME_HTTP_CLUSTER, timeout=seconds(0)),
            # An RBACPerRoute without a policy turns the filter off for this route.
            typed_per_filter_config={RBAC_FILTER: pack(rbac_pb2.RBACPerRoute())},
        )
    ]
