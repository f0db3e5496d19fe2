"""Which gRPC calls Envoy bridges to the runtime's HTTP/1.1 door (translate/grpc_bridge.py)."""

from __future__ import annotations

from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2
from dapr.proto.runtime.v1 import dapr_pb2

from tandem.xds.translate import grpc_bridge


def _streaming(service) -> set[str]:  # type: ignore[no-untyped-def]
    return {m.name for m in service.methods if m.client_streaming or m.server_streaming}


def test_every_streaming_method_keeps_its_own_route_to_grpc_aio() -> None:
    """A stream sent through the bridge would break: each one must match a route of its own
    (to the gRPC cluster) before its service's prefix route to the HTTP door."""
    dapr = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
    hub = orchestrator_service_pb2.DESCRIPTOR.services_by_name[grpc_bridge.TASK_HUB_SERVICE]
    assert set(grpc_bridge.TASK_HUB_STREAMS) == _streaming(hub)
    routes = grpc_bridge.routes()
    to_grpc_aio = {r.match.path for r in routes if r.route.cluster == "tandem_runtime"}
    assert to_grpc_aio == {f"/{dapr.full_name}/{n}" for n in _streaming(dapr)} | {
        f"/{hub.full_name}/{n}" for n in _streaming(hub)
    }
    bridged = [r for r in routes if r.route.cluster == "tandem_runtime_http"]
    assert [r.match.prefix for r in bridged] == [f"/{dapr.full_name}/", f"/{hub.full_name}/"]
    assert routes[-len(bridged) :] == bridged  # after every stream route
    for r in bridged:
        assert [h.header.key for h in r.request_headers_to_add] == [grpc_bridge.BRIDGE_HEADER]
        assert grpc_bridge.BRIDGE_FILTER in r.typed_per_filter_config
