"""Envoy's tracer from the Configuration's ``spec.tracing`` (``Sidecar.tracing``).

Every HTTP connection manager a request crosses (the API listeners, their Unix-socket
twins, the inbound listener) gets the OpenTelemetry tracer (OTLP over gRPC or HTTP) or the
Zipkin tracer, with the sampling rate as ``random_sampling`` and the app id as the
service name, plus one cluster (``tandem_tracing``) to the collector. The app-facing
listeners are marked OUTBOUND, the inbound listener INBOUND, so a caller's span is a
client span and the callee's a server span. With no exporter or a rate of 0 nothing is
added: Envoy then neither samples nor exports, and passes trace headers through.
"""

from __future__ import annotations

import ipaddress

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, grpc_service_pb2, http_service_pb2, http_uri_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2

from tandem.observability.export import TraceExport
from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import HPO_KEY, pack, seconds, socket_address
from tandem.xds.translate.names import HCM_FILTER

TRACING_CLUSTER = "tandem_tracing"
OTEL_TRACER = "envoy.tracers.opentelemetry"
ZIPKIN_TRACER = "envoy.tracers.zipkin"
COLLECTOR_TIMEOUT = 5.0  # seconds per export; Envoy buffers spans meanwhile
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"


def _export(sidecar: Sidecar) -> TraceExport | None:
    t = sidecar.tracing
    if t is None or t.exporter is None or t.sampling_rate <= 0:
        return None
    return t


def _provider(t: TraceExport, app_id: str) -> http_tracer_pb2.Tracing.Http:
    if t.exporter == "zipkin":
        config = zipkin_pb2.ZipkinConfig(
            collector_cluster=TRACING_CLUSTER,
            collector_endpoint=t.path,
            collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
            collector_hostname=t.host,
            trace_id_128bit=True,
            # W3C traceparent too, so the runtime (and the Dapr SDKs) continue the trace.
            trace_context_option=zipkin_pb2.ZipkinConfig.USE_B3_WITH_W3C_PROPAGATION,
        )
        return http_tracer_pb2.Tracing.Http(name=ZIPKIN_TRACER, typed_config=pack(config))
    otel = opentelemetry_pb2.OpenTelemetryConfig(service_name=app_id)
    if t.exporter == "otlp_grpc":
        otel.grpc_service.CopyFrom(
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=TRACING_CLUSTER, authority=t.host
                ),
                timeout=seconds(COLLECTOR_TIMEOUT),
                initial_metadata=[base_pb2.HeaderValue(key=k, value=v) for k, v in t.headers],
            )
        )
    else:
        otel.http_service.CopyFrom(
            http_service_pb2.HttpService(
                http_uri=http_uri_pb2.HttpUri(
                    uri=t.url, cluster=TRACING_CLUSTER, timeout=seconds(COLLECTOR_TIMEOUT)
                ),
                request_headers_to_add=[
                    base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v))
                    for k, v in t.headers
                ],
            )
        )
    return http_tracer_pb2.Tracing.Http(name=OTEL_TRACER, typed_config=pack(otel))


def hcm_tracing(sidecar: Sidecar) -> hcm_pb2.HttpConnectionManager.Tracing | None:
    t = _export(sidecar)
    if t is None:
        return None
    return hcm_pb2.HttpConnectionManager.Tracing(
        random_sampling=percent_pb2.Percent(value=t.sampling_rate * 100),
        provider=_provider(t, sidecar.app_id),
    )


def apply(listener: listener_pb2.Listener, sidecar: Sidecar, *, inbound: bool) -> None:
    """Put the tracer on ``listener``'s connection managers (in place); no-op without one."""
    tracing = hcm_tracing(sidecar)
    if tracing is None:
        return
    listener.traffic_direction = base_pb2.INBOUND if inbound else base_pb2.OUTBOUND
    for chain in listener.filter_chains:
        for f in chain.filters:
            if f.name != HCM_FILTER:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(hcm)
            hcm.tracing.CopyFrom(tracing)
            hcm.generate_request_id.value = True  # the tracer keeps its decision in it
            f.typed_config.Pack(hcm)


def collector_cluster(sidecar: Sidecar) -> cluster_pb2.Cluster | None:
    """The cluster Envoy exports spans through: h2 for OTLP/gRPC, TLS when secure."""
    t = _export(sidecar)
    if t is None:
        return None
    try:
        ipaddress.ip_address(t.host)
        discovery = cluster_pb2.Cluster.STATIC
    except ValueError:
        discovery = cluster_pb2.Cluster.STRICT_DNS
    cluster = cluster_pb2.Cluster(
        name=TRACING_CLUSTER,
        type=discovery,
        connect_timeout=seconds(1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=TRACING_CLUSTER,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=socket_address(t.host, t.port)
                            )
                        )
                    ]
                )
            ],
        ),
    )
    if t.exporter == "otlp_grpc":
        from envoy.config.core.v3 import protocol_pb2
        from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

        cluster.typed_extension_protocol_options[HPO_KEY].Pack(
            hpo_pb2.HttpProtocolOptions(
                explicit_http_config=hpo_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                    http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
                )
            )
        )
    if t.secure:
        context = tls_pb2.UpstreamTlsContext(sni=t.host)
        if t.exporter == "otlp_grpc":
            context.common_tls_context.alpn_protocols.append("h2")
        if t.ca_file:
            context.common_tls_context.validation_context.trusted_ca.filename = t.ca_file
            context.common_tls_context.validation_context.match_typed_subject_alt_names.append(
                common_pb2.SubjectAltNameMatcher(
                    san_type=common_pb2.SubjectAltNameMatcher.DNS,
                    matcher=string_pb2.StringMatcher(exact=t.host),
                )
            )
        cluster.transport_socket.CopyFrom(
            base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
        )
    return cluster
