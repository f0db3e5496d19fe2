"""Listeners on Unix sockets for the runtime's own requests through its Envoy (to its app,
to other actor owners): owner-only, one inline route, no idle timeout (the runtime sets its
own deadline per request)."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from tandem.xds.translate._protos import no_request_id, pack, router_filter, seconds
from tandem.xds.translate.names import HCM_FILTER


def runtime_pipe_listener(
    name: str, path: str, route: rc.Route, filters: Sequence[hcm_pb2.HttpFilter] = ()
) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        route_config=route_pb2.RouteConfiguration(
            name=name, virtual_hosts=[rc.VirtualHost(name=name, domains=["*"], routes=[route])]
        ),
        http_filters=[
            *filters,
            router_filter(),
        ],
        stream_idle_timeout=seconds(0),
        generate_request_id=no_request_id(),
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(pipe=address_pb2.Pipe(path=path, mode=0o600)),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(hcm))]
            )
        ],
    )
