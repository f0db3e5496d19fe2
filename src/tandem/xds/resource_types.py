"""xDS vocabulary: type URLs, the push order, and which names a resource refers to.

Kept apart so the cache and the server share one definition and neither needs to know how
the resources were built.
"""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break: a cluster must exist before a route names it, and a listener is useless
# until its route config arrives. Istio and go-control-plane push in this order too. Secrets
# (SDS) go first: a rotated certificate is independent of everything else, and a cluster
# or listener that names a secret waits for it anyway.
PUSH_ORDER: tuple[str, ...] = (SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE)

# LDS and CDS are always subscribed with a wildcard and answered with the full set (a
# missing name means "delete"); RDS and EDS are requested by name.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})

SHORT_NAMES = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS", SECRET: "SDS"}

_HCM_TYPE = _PREFIX + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_UPSTREAM_TLS = _PREFIX + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name
_DOWNSTREAM_TLS = _PREFIX + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name


def resource_name(resource: Message) -> str:
    """The xDS name of a resource (a ClusterLoadAssignment is named by its cluster)."""
    if isinstance(resource, endpoint_pb2.ClusterLoadAssignment):
        return str(resource.cluster_name)
    if isinstance(
        resource,
        cluster_pb2.Cluster
        | listener_pb2.Listener
        | route_pb2.RouteConfiguration
        | secret_pb2.Secret,
    ):
        return str(resource.name)
    raise TypeError(f"not an xDS resource this control plane serves: {type(resource).__name__}")


def type_url_of(resource: Message) -> str:
    return _PREFIX + resource.DESCRIPTOR.full_name


def _sds_names(transport_socket_config: any_pb2.Any) -> Iterator[str]:
    """SDS secret names a TLS transport socket refers to."""
    common: tls_pb2.CommonTlsContext | None = None
    for url, message_type in (
        (_UPSTREAM_TLS, tls_pb2.UpstreamTlsContext),
        (_DOWNSTREAM_TLS, tls_pb2.DownstreamTlsContext),
    ):
        if transport_socket_config.type_url == url:
            context = message_type()
            transport_socket_config.Unpack(context)
            common = context.common_tls_context
    if common is None:
        return
    for config in common.tls_certificate_sds_secret_configs:
        yield config.name
    if common.HasField("validation_context_sds_secret_config"):
        yield common.validation_context_sds_secret_config.name
    combined = common.combined_validation_context
    if combined.HasField("validation_context_sds_secret_config"):
        yield combined.validation_context_sds_secret_config.name


def references(resource: Message) -> Iterator[tuple[str, str]]:
    """(type URL, name) of every resource this one needs over ADS (RDS from LDS, EDS from CDS,
    SDS from either)."""
    if isinstance(resource, cluster_pb2.Cluster):
        if resource.type == cluster_pb2.Cluster.EDS:
            yield ENDPOINT, resource.eds_cluster_config.service_name or resource.name
        for name in _sds_names(resource.transport_socket.typed_config):
            yield SECRET, name
    elif isinstance(resource, listener_pb2.Listener):
        for chain in resource.filter_chains:
            for name in _sds_names(chain.transport_socket.typed_config):
                yield SECRET, name
            for network_filter in chain.filters:
                typed = network_filter.typed_config
                if typed.type_url != _HCM_TYPE:
                    continue
                hcm = hcm_pb2.HttpConnectionManager()
                typed.Unpack(hcm)
                if hcm.HasField("rds"):
                    yield ROUTE, hcm.rds.route_config_name
