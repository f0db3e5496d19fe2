"""The three listeners of a sidecar, each an HCM whose routes arrive over RDS."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import wrappers_pb2

from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import (
    actors,
    api_logging,
    app_health,
    grpc_bridge,
    http_endpoints,
    middleware,
    rbac,
    tls,
    tracing,
    traffic,
)
from tandem.xds.translate._protos import (
    ads,
    no_request_id,
    pack,
    router_filter,
    seconds,
    socket_address,
)
from tandem.xds.translate.ext_proc import ext_proc_filter
from tandem.xds.translate.local_app import app_channel_listener
from tandem.xds.translate.local_reply import local_reply_config
from tandem.xds.translate.names import (
    DAPR_GRPC,
    DAPR_HTTP,
    DAPR_INBOUND,
    EXT_PROC_FILTER,
    HCM_FILTER,
    LOOPBACK,
)
from tandem.xds.translate.uds import uds_listeners

_HCM = hcm_pb2.HttpConnectionManager


def _listener(
    name: str,
    host: str,
    port: int,
    hcm: hcm_pb2.HttpConnectionManager,
    buffer_limit: int | None = None,
    transport_socket: base_pb2.TransportSocket | None = None,
) -> listener_pb2.Listener:
    chain = listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(hcm))]
    )
    if transport_socket is not None:
        chain.transport_socket.CopyFrom(transport_socket)
    listener = listener_pb2.Listener(
        name=name,
        address=socket_address(host, port),
        filter_chains=[chain],
        # Envoy binds with SO_REUSEPORT by default, so a second sidecar on the same port
        # silently shares it and the kernel splits connections between the two. Refuse.
        enable_reuse_port=wrappers_pb2.BoolValue(value=False),
    )
    if buffer_limit is not None:
        listener.per_connection_buffer_limit_bytes.CopyFrom(
            wrappers_pb2.UInt32Value(value=buffer_limit)
        )
    return listener


def _hcm(
    name: str,
    codec: int,
    http_filters: Sequence[hcm_pb2.HttpFilter],
    local_reply: hcm_pb2.LocalReplyConfig | None = None,
) -> hcm_pb2.HttpConnectionManager:
    hcm = _HCM(
        stat_prefix=name,
        codec_type=codec,  # type: ignore[arg-type]
        rds=hcm_pb2.Rds(route_config_name=name, config_source=ads()),
        http_filters=list(http_filters),
        generate_request_id=no_request_id(),
    )
    if local_reply is not None:
        hcm.local_reply_config.CopyFrom(local_reply)
    return hcm


def dapr_http(sidecar: Sidecar) -> listener_pb2.Listener:
    """App-facing Dapr HTTP API: the router invokes apps; building blocks go to the runtime,
    either proxied over HTTP/1.1 (``api_transport: http``, no ext_proc in the chain) or
    answered by ext_proc."""
    # By-URL invocation resolves its host in this filter (translate/http_endpoints.py).
    # Fault injection and rate limits of traffic policies (translate/traffic.py).
    filters = [
        http_endpoints.url_filter(),
        *traffic.http_filters(sidecar),
        router_filter(envoy_headers=sidecar.api_logging is not None),
    ]
    if sidecar.api_transport == "ext_proc":
        filters.insert(
            0,
            hcm_pb2.HttpFilter(name=EXT_PROC_FILTER, typed_config=pack(ext_proc_filter(sidecar))),
        )
    filters[:0] = api_logging.obfuscation_filters(sidecar)
    filters[:0] = middleware.api_filters(sidecar)  # httpPipeline, first (translate/middleware.py)
    hcm = _hcm(
        DAPR_HTTP,
        _HCM.AUTO,
        filters,
        local_reply_config(
            max_body_bytes=sidecar.max_body_bytes,
            runtime_http=sidecar.api_transport == "http",
        ),
    )
    # Rate-limited and fault-aborted calls answer Dapr's JSON (translate/traffic.py).
    mappers = [*traffic.reply_mappers(sidecar), *hcm.local_reply_config.mappers]
    del hcm.local_reply_config.mappers[:]
    hcm.local_reply_config.mappers.extend(mappers)
    hcm.access_log.extend(api_logging.access_logs(sidecar, grpc=False))
    # BUFFERED ext_proc bodies over this limit get a 413: this is the Dapr max body size.
    # (Over HTTP the runtime enforces it; for a streamed body this is only Envoy's watermark.)
    return _listener(DAPR_HTTP, LOOPBACK, sidecar.http_port, hcm, sidecar.max_body_bytes)


def dapr_grpc(sidecar: Sidecar) -> listener_pb2.Listener:
    """App-facing Dapr gRPC API: the runtime's gRPC server, or gRPC proxying to other apps."""
    filters = [
        *traffic.http_filters(sidecar),
        router_filter(envoy_headers=sidecar.api_logging is not None),
    ]
    if grpc_bridge.enabled(sidecar):
        filters.insert(-1, grpc_bridge.http_filter())  # on its one route only (routes.py)
    hcm = _hcm(DAPR_GRPC, _HCM.HTTP2, filters)
    hcm.access_log.extend(api_logging.access_logs(sidecar, grpc=True))
    # SDK streams (work items, subscriptions) legitimately sit idle for long stretches;
    # HTTP/2 keepalive finds dead peers instead of an idle timer cutting live streams.
    hcm.stream_idle_timeout.CopyFrom(seconds(0))
    hcm.http2_protocol_options.CopyFrom(
        protocol_pb2.Http2ProtocolOptions(
            connection_keepalive=protocol_pb2.KeepaliveSettings(
                interval=seconds(30), timeout=seconds(20)
            )
        )
    )
    return _listener(DAPR_GRPC, LOOPBACK, sidecar.grpc_port, hcm)


def dapr_inbound(sidecar: Sidecar, mesh: Mesh) -> listener_pb2.Listener:
    """Where other sidecars deliver invocations for this app (HTTP/1 or HTTP/2, AUTO):
    mTLS with a client certificate from the mesh CA, then the app's access control."""
    filters = []
    access = sidecar.access_control
    if access is not None:
        filters.append(
            hcm_pb2.HttpFilter(
                name=rbac.RBAC_FILTER,
                typed_config=pack(
                    rbac.rbac_filter(access, http_app=sidecar.app_protocol != "grpc")
                ),
            )
        )
    filters += middleware.app_filters(sidecar)  # appHttpPipeline (translate/middleware.py)
    filters.append(router_filter())
    hcm = _hcm(
        DAPR_INBOUND,
        _HCM.AUTO,
        filters,
        local_reply_config(access_controlled=sidecar.app_id if access is not None else None),
    )
    # First match wins: an unhealthy app (app health checks) before "no healthy upstream".
    mappers = [*app_health.unhealthy_app_mappers(sidecar), *hcm.local_reply_config.mappers]
    del hcm.local_reply_config.mappers[:]
    hcm.local_reply_config.mappers.extend(mappers)
    # Access control matches the path: `/a/../b` and `//b` must not slip past a rule for `/b`.
    hcm.normalize_path.CopyFrom(wrappers_pb2.BoolValue(value=True))
    hcm.merge_slashes = True
    transport = tls.inbound_transport_socket(mesh)
    if transport is not None:
        # The app may read the verified caller identity: XFCC carries the peer's SPIFFE id.
        hcm.forward_client_cert_details = _HCM.SANITIZE_SET
        hcm.set_current_client_cert_details.CopyFrom(_HCM.SetCurrentClientCertDetails(uri=True))
    return _listener(
        DAPR_INBOUND,
        sidecar.internal_address,
        sidecar.internal_port,
        hcm,
        transport_socket=transport,
    )


def listeners(sidecar: Sidecar, mesh: Mesh) -> list[listener_pb2.Listener]:
    http, grpc, inbound = dapr_http(sidecar), dapr_grpc(sidecar), dapr_inbound(sidecar, mesh)
    for listener in (http, grpc, inbound):
        tracing.apply(listener, sidecar, inbound=listener is inbound)
    app_channel = app_channel_listener(sidecar)
    forward = actors.forward_listener(sidecar)
    return [
        http,
        grpc,
        inbound,
        *uds_listeners(sidecar, http, grpc),
        *((app_channel,) if app_channel is not None else ()),
        *((forward,) if forward is not None else ()),
    ]
