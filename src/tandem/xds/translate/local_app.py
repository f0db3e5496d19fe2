"""The app side of a sidecar: cluster ``local_app`` and the runtime's app channel listener.

``local_app`` speaks the app's protocol (``--app-protocol``): HTTP/1.1 (http), HTTP/2
(grpc, h2c), each over TLS for https / grpcs without verifying the app's certificate
(Dapr does not verify it either: the app is on loopback and usually self-signed).
``--app-max-concurrency N`` caps the requests in flight to the app at N; the rest wait
in Envoy's pending queue (Dapr queues them too) instead of failing.

The runtime reaches its app through Envoy as well (listener ``dapr_app_channel`` on a Unix
socket, plain HTTP/1.1 or h2c): pub/sub deliveries and invocations share one limit, one
TLS and protocol setting, and the runtime never needs its own TLS or HTTP/2 client.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from google.protobuf import wrappers_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate import middleware
from tandem.xds.translate._protos import HPO_KEY, pack, seconds, socket_address
from tandem.xds.translate.names import (
    APP_CHANNEL,
    LOCAL_APP_CLUSTER,
    LOOPBACK,
)
from tandem.xds.translate.pipes import runtime_pipe_listener

_TLS_SOCKET = "envoy.transport_sockets.tls"
# The app is local; a slow connect means a dead app.
CONNECT_TIMEOUT_SECONDS = 3
# Dapr queues requests over the limit without bound; Envoy's pending queue needs a number.
MAX_PENDING_REQUESTS = 1 << 20


def _protocol_options(sidecar: Sidecar) -> hpo_pb2.HttpProtocolOptions:
    config = hpo_pb2.HttpProtocolOptions.ExplicitHttpConfig()
    if sidecar.app_uses_http2:
        h2 = protocol_pb2.Http2ProtocolOptions()
        if sidecar.app_max_concurrency is not None:
            # One connection (see _circuit_breakers) carrying at most N streams.
            h2.max_concurrent_streams.CopyFrom(
                wrappers_pb2.UInt32Value(value=sidecar.app_max_concurrency)
            )
        config.http2_protocol_options.CopyFrom(h2)
    else:
        config.http_protocol_options.CopyFrom(protocol_pb2.Http1ProtocolOptions())
    return hpo_pb2.HttpProtocolOptions(explicit_http_config=config)


def _circuit_breakers(limit: int, http2: bool) -> circuit_breaker_pb2.CircuitBreakers:
    """At most ``limit`` requests reach the app at once: an HTTP/1.1 connection carries one
    request at a time, so ``limit`` connections; HTTP/2 uses one connection of ``limit``
    streams. Requests over the limit wait as pending requests rather than being refused:
    the request limit stays at Envoy's default, since crossing it answers 503 at once.
    (Envoy lets each worker thread open one connection whatever the limit, so `tandem run`
    starts this sidecar's Envoy with one worker.)"""
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_connections=wrappers_pb2.UInt32Value(value=1 if http2 else limit),
                max_pending_requests=wrappers_pb2.UInt32Value(value=MAX_PENDING_REQUESTS),
            )
        ]
    )


def _tls(sidecar: Sidecar) -> base_pb2.TransportSocket:
    # No validation_context: the app's (often self-signed) certificate is not checked.
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=["h2"] if sidecar.app_uses_http2 else ["http/1.1"]
        )
    )
    return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))


def local_app(sidecar: Sidecar) -> cluster_pb2.Cluster | None:
    if sidecar.app_port is None:
        return None
    cluster = cluster_pb2.Cluster(
        name=LOCAL_APP_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        typed_extension_protocol_options={HPO_KEY: pack(_protocol_options(sidecar))},
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
    if sidecar.app_max_concurrency is not None:
        cluster.circuit_breakers.CopyFrom(
            _circuit_breakers(sidecar.app_max_concurrency, sidecar.app_uses_http2)
        )
    if sidecar.app_uses_tls:
        cluster.transport_socket.CopyFrom(_tls(sidecar))
    return cluster


def app_channel_listener(sidecar: Sidecar) -> listener_pb2.Listener | None:
    """Where the runtime sends its requests to the app (deliveries, /dapr/subscribe, …)."""
    if sidecar.app_port is None or sidecar.app_channel_socket is None:
        return None
    route = rc.Route(
        name="app-channel",
        match=rc.RouteMatch(prefix="/"),
        # The runtime sets its own deadline per request.
        route=rc.RouteAction(cluster=LOCAL_APP_CLUSTER, timeout=seconds(0)),
    )
    # A subscriber may hold a delivery for long: no idle timeout on this listener.
    # The appHttpPipeline applies to the runtime's calls too (translate/middleware.py).
    return runtime_pipe_listener(
        APP_CHANNEL, sidecar.app_channel_socket, route, middleware.app_filters(sidecar)
    )
