"""Clusters: ``app:<id>`` per known app (EDS over ADS, mTLS when on) and ``local_app``."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import tls
from tandem.xds.translate._protos import ads, pack, seconds
from tandem.xds.translate.local_app import local_app
from tandem.xds.translate.names import app_cluster

_HPO_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Sidecars and apps are local or one hop away; a slow connect means a dead peer.
CONNECT_TIMEOUT_SECONDS = 3


def _downstream_protocol() -> hpo_pb2.HttpProtocolOptions:
    # An HTTP/1 caller stays HTTP/1 to the callee's Envoy, an HTTP/2 (gRPC) caller stays h2c.
    return hpo_pb2.HttpProtocolOptions(
        use_downstream_protocol_config=hpo_pb2.HttpProtocolOptions.UseDownstreamHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions(),
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions(),
        )
    )


def app_cluster_for(app_id: str, mesh: Mesh) -> cluster_pb2.Cluster:
    name = app_cluster(app_id)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads(), service_name=name
        ),
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        typed_extension_protocol_options={_HPO_KEY: pack(_downstream_protocol())},
    )
    transport = tls.upstream_transport_socket(mesh, app_id)
    if transport is not None:
        cluster.transport_socket.CopyFrom(transport)
    return cluster


def clusters(sidecar: Sidecar, mesh: Mesh) -> list[cluster_pb2.Cluster]:
    out = [app_cluster_for(app, mesh) for app in mesh.app_ids()]
    local = local_app(sidecar)
    if local is not None:
        out.append(local)
    return out
