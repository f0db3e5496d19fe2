"""Prometheus metrics on ``metrics_port``: ``GET /metrics`` answered by Envoy's own admin.

Listener ``dapr_metrics`` routes exactly ``/metrics`` to cluster ``envoy_admin`` (the admin
Unix socket), rewriting the path to ``/stats/prometheus``. Nothing else of the admin API is
reachable through it: every other path gets a 404 from Envoy itself.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import no_request_id, pack, router_filter, seconds, socket_address
from tandem.xds.translate.names import (
    ADMIN_CLUSTER,
    DAPR_METRICS,
    HCM_FILTER,
    LOOPBACK,
)

METRICS_PATH = "/metrics"
RUNTIME_METRICS_CLUSTER = "tandem_runtime_metrics"
ADMIN_PROMETHEUS_PATH = "/stats/prometheus"


def enabled(sidecar: Sidecar) -> bool:
    return sidecar.metrics_port is not None and sidecar.admin_socket is not None


def _target(sidecar: Sidecar) -> tuple[str, str, str | None]:
    """(cluster, socket, path rewrite) that answers /metrics: the runtime when it serves
    /metrics (its Dapr metrics, then Envoy's stats, which it reads itself), else the admin."""
    if sidecar.runtime_metrics_socket is not None:
        return RUNTIME_METRICS_CLUSTER, sidecar.runtime_metrics_socket, None
    assert sidecar.admin_socket is not None
    return ADMIN_CLUSTER, sidecar.admin_socket, ADMIN_PROMETHEUS_PATH


def admin_cluster(sidecar: Sidecar) -> cluster_pb2.Cluster | None:
    """The cluster of /metrics (see ``_target``)."""
    if not enabled(sidecar):
        return None
    name, socket, _ = _target(sidecar)
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=address_pb2.Address(pipe=address_pb2.Pipe(path=socket))
                            )
                        )
                    ]
                )
            ],
        ),
    )


def _routes(sidecar: Sidecar) -> route_pb2.RouteConfiguration:
    cluster, _, rewrite = _target(sidecar)
    action = rc.RouteAction(cluster=cluster, timeout=seconds(10))
    if rewrite is not None:
        action.prefix_rewrite = rewrite
    return route_pb2.RouteConfiguration(
        name=DAPR_METRICS,
        virtual_hosts=[
            rc.VirtualHost(
                name=DAPR_METRICS,
                domains=["*"],
                routes=[
                    rc.Route(
                        name="prometheus",
                        match=rc.RouteMatch(
                            path=METRICS_PATH,
                            headers=[
                                rc.HeaderMatcher(
                                    name=":method",
                                    string_match=string_pb2.StringMatcher(exact="GET"),
                                )
                            ],
                        ),
                        route=action,
                    ),
                    rc.Route(
                        name="not-metrics",
                        match=rc.RouteMatch(prefix="/"),
                        direct_response=rc.DirectResponseAction(
                            status=404,
                            body=base_pb2.DataSource(
                                inline_string="only GET /metrics is served here\n"
                            ),
                        ),
                    ),
                ],
            )
        ],
    )


def metrics_listener(sidecar: Sidecar) -> listener_pb2.Listener | None:
    if not enabled(sidecar):
        return None
    assert sidecar.metrics_port is not None
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=DAPR_METRICS,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        # Static: the route never changes while the sidecar lives, so no RDS round trip.
        route_config=_routes(sidecar),
        http_filters=[router_filter()],
        generate_request_id=no_request_id(),
    )
    return listener_pb2.Listener(
        name=DAPR_METRICS,
        address=socket_address(LOOPBACK, sidecar.metrics_port),
        enable_reuse_port=wrappers_pb2.BoolValue(value=False),  # see listeners._listener
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(hcm))]
            )
        ],
    )
