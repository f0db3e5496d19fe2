"""App health checks in Envoy: invocations to an unhealthy app stop at its sidecar.

Dapr short-circuits service invocation while the app fails its health checks. The runtime
probes the app (Dapr's probe for each protocol) and serves its verdict on a Unix socket.
Invocations then take cluster ``local_app_gated``: health-checked at that socket (one check
per probe interval, each verdict final since the runtime already applied the threshold;
no panic threshold, so an unhealthy app gets nothing) and leading to the app channel
listener, hence to ``local_app`` like every other request to the app (one concurrency
limit, one TLS setting). The runtime's own requests (probes, deliveries) skip the gate:
its probes must reach a sick app to see it recover, and it holds deliveries itself. The
callee's inbound listener answers Dapr's error for a gated invocation.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import HPO_KEY, downstream_protocol_options, pack, seconds
from tandem.xds.translate.local_reply import APP_ID_FORMAT, error_body
from tandem.xds.translate.names import LOCAL_APP_CLUSTER, LOCAL_APP_GATED_CLUSTER

VERDICT_TIMEOUT_SECONDS = 1.0  # a local socket: slower means the runtime is stuck
CONNECT_TIMEOUT_SECONDS = 3
UNHEALTHY_MESSAGE = "app is not in a healthy state"  # Dapr's words


def _gated(sidecar: Sidecar) -> bool:
    return (
        sidecar.app_health is not None
        and sidecar.app_port is not None
        and sidecar.app_channel_socket is not None
    )


def inbound_cluster(sidecar: Sidecar) -> str:
    """The cluster invocations of this sidecar's app go to."""
    return LOCAL_APP_GATED_CLUSTER if _gated(sidecar) else LOCAL_APP_CLUSTER


def _health_check(interval: float) -> health_check_pb2.HealthCheck:
    return health_check_pb2.HealthCheck(
        timeout=seconds(VERDICT_TIMEOUT_SECONDS),
        interval=seconds(interval),
        # Idle clusters are checked every minute by default; the verdict must stay fresh.
        no_traffic_interval=seconds(interval),
        unhealthy_threshold=wrappers_pb2.UInt32Value(value=1),
        healthy_threshold=wrappers_pb2.UInt32Value(value=1),
        http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(path="/"),
    )


def gated_clusters(sidecar: Sidecar) -> list[cluster_pb2.Cluster]:
    if not _gated(sidecar):
        return []
    check = sidecar.app_health
    assert check is not None and sidecar.app_channel_socket is not None
    endpoint = endpoint_components_pb2.Endpoint(
        address=address_pb2.Address(pipe=address_pb2.Pipe(path=sidecar.app_channel_socket)),
        health_check_config=endpoint_components_pb2.Endpoint.HealthCheckConfig(
            address=address_pb2.Address(pipe=address_pb2.Pipe(path=check.socket))
        ),
    )
    cluster = cluster_pb2.Cluster(
        name=LOCAL_APP_GATED_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        # The app channel listener takes either; gRPC stays HTTP/2 on the way to the app.
        typed_extension_protocol_options={HPO_KEY: pack(downstream_protocol_options())},
        health_checks=[_health_check(check.interval_ms / 1000)],
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=LOCAL_APP_GATED_CLUSTER,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[endpoint_components_pb2.LbEndpoint(endpoint=endpoint)]
                )
            ],
        ),
    )
    # The app is the only host: when it is unhealthy it must get nothing ("panic" mode off).
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(percent_pb2.Percent(value=0))
    return [cluster]


def unhealthy_app_mappers(sidecar: Sidecar) -> list[hcm_pb2.ResponseMapper]:
    """Dapr's answer to an invocation of an unhealthy app (the callee's inbound listener)."""
    if not _gated(sidecar):
        return []
    message = f"failed to invoke, id: {APP_ID_FORMAT}, err: {UNHEALTHY_MESSAGE}"
    return [
        hcm_pb2.ResponseMapper(
            filter=accesslog_pb2.AccessLogFilter(
                response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=["UH"])
            ),
            status_code=wrappers_pb2.UInt32Value(value=500),
            body_format_override=error_body("ERR_DIRECT_INVOKE", message),
        )
    ]
