"""Small builders for proto fragments every feature module needs."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, protocol_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from tandem.xds.translate.names import ROUTER_FILTER

HPO_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def router_filter(*, envoy_headers: bool = False) -> hcm_pb2.HttpFilter:
    """The router, adding no ``x-envoy-*`` headers to requests or answers: Dapr sends none
    (an app or caller would see Envoy's plumbing), and writing them costs CPU per request.

    ``envoy_headers``: keep them where something reads one: the API log's ``%PATH%`` is
    the path before a route's rewrite only through ``x-envoy-original-path``."""
    router = router_pb2.Router(suppress_envoy_headers=not envoy_headers)
    return hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router))


def no_request_id() -> wrappers_pb2.BoolValue:
    """For ``generate_request_id``: an x-request-id serves only Envoy's tracer (it carries
    the sampling decision), so a connection manager makes none unless ``tracing.apply``
    gives it a tracer. A UUID per request is a measurable part of Envoy's CPU per request
    (BENCHMARKS.md)."""
    return wrappers_pb2.BoolValue(value=False)


def downstream_protocol_options() -> hpo_pb2.HttpProtocolOptions:
    # An HTTP/1 caller stays HTTP/1 upstream, an HTTP/2 (gRPC) caller stays h2c.
    return hpo_pb2.HttpProtocolOptions(
        use_downstream_protocol_config=hpo_pb2.HttpProtocolOptions.UseDownstreamHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions(),
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions(),
        )
    )


def peer_protocol_options() -> hpo_pb2.HttpProtocolOptions:
    # Sidecar to sidecar is always HTTP/2: concurrent calls share one connection and
    # Envoy batches their frames (the peer's inbound listener detects h2 or HTTP/1).
    return hpo_pb2.HttpProtocolOptions(
        explicit_http_config=hpo_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def seconds(value: float) -> duration_pb2.Duration:
    whole = int(value)
    return duration_pb2.Duration(seconds=whole, nanos=round((value - whole) * 1e9))


def ads() -> config_source_pb2.ConfigSource:
    """A ConfigSource that rides the ADS stream (RDS/EDS names fetched over ADS)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def socket_address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def set_header(name: str, value: str) -> base_pb2.HeaderValueOption:
    """A header that replaces whatever the client sent, so it cannot be spoofed."""
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def struct(values: Mapping[str, str]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(dict(values))
    return out


def metadata(namespace: str, values: Mapping[str, str]) -> base_pb2.Metadata:
    return base_pb2.Metadata(filter_metadata={namespace: struct(values)})
