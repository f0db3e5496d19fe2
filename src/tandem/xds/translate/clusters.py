"""Clusters: ``app:<id>`` per known app (EDS over ADS, mTLS when on) and ``local_app``."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import tls
from tandem.xds.translate._protos import ads, pack, seconds, socket_address
from tandem.xds.translate.names import LOCAL_APP_CLUSTER, LOOPBACK, app_cluster

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


def _explicit(http2: bool) -> hpo_pb2.HttpProtocolOptions:
    config = hpo_pb2.HttpProtocolOptions.ExplicitHttpConfig()
    if http2:
        config.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    else:
        config.http_protocol_options.CopyFrom(protocol_pb2.Http1ProtocolOptions())
    return hpo_pb2.HttpProtocolOptions(explicit_http_config=config)


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


def local_app(sidecar: Sidecar) -> cluster_pb2.Cluster | None:
    if sidecar.app_port is None:
        return None
    return cluster_pb2.Cluster(
        name=LOCAL_APP_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        typed_extension_protocol_options={
            _HPO_KEY: pack(_explicit(http2=sidecar.app_protocol == "grpc"))
        },
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=LOCAL_APP_CLUSTER,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=socket_address(LOOPBACK, sidecar.app_port)
                            )
                        )
                    ]
                )
            ],
        ),
    )


def clusters(sidecar: Sidecar, mesh: Mesh) -> list[cluster_pb2.Cluster]:
    out = [app_cluster_for(app, mesh) for app in mesh.app_ids()]
    local = local_app(sidecar)
    if local is not None:
        out.append(local)
    return out
