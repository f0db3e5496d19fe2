"""Clusters: ``app:<id>`` per known app (EDS over ADS, mTLS when on) and ``local_app``."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

from tandem.resources.resiliency import app_policy
from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import (
    actors,
    app_health,
    http_endpoints,
    middleware,
    resiliency,
    tls,
    traffic,
)
from tandem.xds.translate._protos import HPO_KEY, ads, pack, peer_protocol_options, seconds
from tandem.xds.translate.local_app import local_app
from tandem.xds.translate.names import app_cluster

# Sidecars and apps are local or one hop away; a slow connect means a dead peer.
CONNECT_TIMEOUT_SECONDS = 3


def app_cluster_for(app_id: str, mesh: Mesh, caller: Sidecar | None = None) -> cluster_pb2.Cluster:
    name = app_cluster(app_id)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads(), service_name=name
        ),
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        typed_extension_protocol_options={HPO_KEY: pack(peer_protocol_options())},
    )
    transport = tls.upstream_transport_socket(mesh, app_id)
    if transport is not None:
        cluster.transport_socket.CopyFrom(transport)
    if caller is not None:
        # The caller's circuit breaker for this app (translate/resiliency.py).
        resiliency.apply_to_cluster(cluster, app_policy(caller.resiliencies, app_id))
        # Its BackendTrafficPolicy: thresholds, load balancer (translate/traffic.py).
        traffic.apply_to_cluster(cluster, caller, app_id)
    ttl = mesh.security.certificate_ttl
    if transport is not None and ttl is not None:
        # Certificates rotate at half-life: a connection closed (drained) by then never runs
        # on a certificate past its expiry, and the next one presents the new certificate.
        options = hpo_pb2.HttpProtocolOptions()
        cluster.typed_extension_protocol_options[HPO_KEY].Unpack(options)
        options.common_http_protocol_options.max_connection_duration.CopyFrom(
            seconds(ttl.total_seconds() / 2)
        )
        cluster.typed_extension_protocol_options[HPO_KEY].CopyFrom(pack(options))
    return cluster


def clusters(sidecar: Sidecar, mesh: Mesh) -> list[cluster_pb2.Cluster]:
    out = [app_cluster_for(app, mesh, sidecar) for app in mesh.app_ids()]
    local = local_app(sidecar)
    if local is not None:
        out.append(local)
    out += app_health.gated_clusters(sidecar)
    out += actors.host_clusters(sidecar, mesh)
    out += http_endpoints.clusters(sidecar)
    out += http_endpoints.url_clusters()
    out += middleware.clusters(sidecar)  # JWKS hosts of bearer middleware
    return out
