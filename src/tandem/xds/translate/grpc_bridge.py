"""Unary Dapr gRPC API calls through the runtime's HTTP/1.1 door (``grpc_http1_reverse_bridge``).

grpc.aio's per-call cost made the gRPC API 2–4× slower than the HTTP door on the same
sidecar (BENCHMARKS.md, "gRPC API path"). On a sidecar whose runtime has that door
(``api_transport: http``), the ``dapr_grpc`` listener sends every *unary* method of the
``dapr.proto.runtime.v1.Dapr`` service and of the workflow SDK's ``TaskHubSidecarService``
there (``tandem.ext_proc.grpc_over_http`` answers); streaming methods and everything else
still reach grpc.aio.

The bridge runs with ``content_type: application/grpc`` and frames kept (not
``withhold_grpc_frames``): the runtime answers a success as a framed message, to which the
filter adds ``grpc-status: 0``, and a failure as a trailers-only answer whose
``grpc-status``/``grpc-message``/``grpc-status-details-bin`` headers the filter leaves alone
(with withheld frames it would add an empty message and an OK trailer after them, and its
HTTP-status mapping cannot express most gRPC codes). The filter is switched off for the
listener's other routes (gRPC proxying to apps must keep the apps' own trailers).
"""

from __future__ import annotations

from dapr.proto.runtime.v1 import dapr_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.grpc_http1_reverse_bridge.v3 import config_pb2 as bridge_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from tandem.xds.contract import GRPC_BRIDGE_HEADER, TASK_HUB_SERVICE
from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import pack, seconds, set_header
from tandem.xds.translate.names import RUNTIME_CLUSTER, RUNTIME_HTTP_CLUSTER

BRIDGE_FILTER = "envoy.filters.http.grpc_http1_reverse_bridge"
BRIDGE_HEADER = GRPC_BRIDGE_HEADER
ROUTE_NAME = "runtime-grpc-unary"
# TASK_HUB_SERVICE: only its work-item stream streams (checked against the SDK's protos in
# tests/xds/test_grpc_bridge.py).
TASK_HUB_STREAMS = ("GetWorkItems",)


def enabled(sidecar: Sidecar) -> bool:
    """Only a runtime with the HTTP/1.1 door in the API path is sure to have the cluster."""
    return sidecar.api_transport == "http"


def streaming_methods() -> list[str]:
    service = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
    return [m.name for m in service.methods if m.client_streaming or m.server_streaming]


def http_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(
        name=BRIDGE_FILTER,
        typed_config=pack(
            bridge_pb2.FilterConfig(content_type="application/grpc", withhold_grpc_frames=False)
        ),
    )


def off() -> dict[str, any_pb2.Any]:
    """Per-filter config that keeps the bridge out of a virtual host's routes."""
    return {BRIDGE_FILTER: pack(bridge_pb2.FilterConfigPerRoute(disabled=True))}


def routes() -> list[rc.Route]:
    """Per service (the Dapr service, the task hub): its streaming methods to grpc.aio (exact
    paths: few, where an RE2 alternation of every unary method is over Envoy's program size
    limit), then the rest of the service to the HTTP door."""
    dapr = f"/{dapr_pb2.DESCRIPTOR.services_by_name['Dapr'].full_name}/"
    task_hub = f"/{TASK_HUB_SERVICE}/"
    streams = [dapr + name for name in streaming_methods()]
    streams += [task_hub + name for name in TASK_HUB_STREAMS]
    out = [
        rc.Route(
            name=f"runtime-grpc-stream:{path.rsplit('/', 1)[1]}",
            match=rc.RouteMatch(path=path),
            # Streams live as long as the app, as on the listener's catch-all route.
            route=rc.RouteAction(cluster=RUNTIME_CLUSTER, timeout=seconds(0)),
        )
        for path in streams
    ]
    for name, prefix in ((ROUTE_NAME, dapr), (f"{ROUTE_NAME}:task-hub", task_hub)):
        unary = rc.Route(
            name=name,
            match=rc.RouteMatch(prefix=prefix),
            # As on grpc.aio: no route timeout (a client's deadline ends its own call).
            route=rc.RouteAction(cluster=RUNTIME_HTTP_CLUSTER, timeout=seconds(0)),
            request_headers_to_add=[set_header(BRIDGE_HEADER, "1")],
        )
        unary.typed_per_filter_config[BRIDGE_FILTER].CopyFrom(
            pack(bridge_pb2.FilterConfigPerRoute(disabled=False))
        )
        out.append(unary)
    return out
