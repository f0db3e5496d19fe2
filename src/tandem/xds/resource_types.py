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
from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"

# Make-before-break: a cluster must exist before a route names it, and a listener is useless
# until its route config arrives. Istio and go-control-plane push in this order too.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

# LDS and CDS are always subscribed with a wildcard and answered with the full set (a
# missing name means "delete"); RDS and EDS are requested by name.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})

SHORT_NAMES = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS"}

_HCM_TYPE = _PREFIX + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name


def resource_name(resource: Message) -> str:
    """The xDS name of a resource (a ClusterLoadAssignment is named by its cluster)."""
    if isinstance(resource, endpoint_pb2.ClusterLoadAssignment):
        return str(resource.cluster_name)
    if isinstance(
        resource, cluster_pb2.Cluster | listener_pb2.Listener | route_pb2.RouteConfiguration
    ):
        return str(resource.name)
    raise TypeError(f"not an xDS resource this control plane serves: {type(resource).__name__}")


def type_url_of(resource: Message) -> str:
    return _PREFIX + resource.DESCRIPTOR.full_name


def references(resource: Message) -> Iterator[tuple[str, str]]:
    """(type URL, name) of every resource this one needs over ADS (RDS from LDS, EDS from CDS)."""
    if isinstance(resource, cluster_pb2.Cluster):
        if resource.type == cluster_pb2.Cluster.EDS:
            yield ENDPOINT, resource.eds_cluster_config.service_name or resource.name
    elif isinstance(resource, listener_pb2.Listener):
        for chain in resource.filter_chains:
            for network_filter in chain.filters:
                typed = network_filter.typed_config
                if typed.type_url != _HCM_TYPE:
                    continue
                hcm = hcm_pb2.HttpConnectionManager()
                typed.Unpack(hcm)
                if hcm.HasField("rds"):
                    yield ROUTE, hcm.rds.route_config_name
