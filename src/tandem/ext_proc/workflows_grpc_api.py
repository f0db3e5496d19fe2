"""The Dapr gRPC service's workflow methods (``*WorkflowBeta1`` and the deprecated
``*WorkflowAlpha1`` twins), over the same management API as the HTTP routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from dapr.proto.runtime.v1 import workflow_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from tandem.blocks.workflows.management import START_TIME_OPTION, WorkflowApi

UnaryRpc = Callable[[Any], Awaitable[Any]]


def _time(raw: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    return ts


def _text(data: bytes) -> str | None:
    return data.decode(errors="replace") if data else None


def rpcs(api: WorkflowApi) -> dict[str, UnaryRpc]:
    async def start(req: Any) -> Any:
        instance_id = await api.start(
            req.workflow_component,
            req.workflow_name,
            req.instance_id,
            _text(req.input),
            req.options.get(START_TIME_OPTION, ""),
        )
        return workflow_pb2.StartWorkflowResponse(instance_id=instance_id)

    async def get(req: Any) -> Any:
        got = await api.get(req.workflow_component, req.instance_id)
        return workflow_pb2.GetWorkflowResponse(
            instance_id=got["instanceID"],
            workflow_name=got["workflowName"],
            created_at=_time(got["createdAt"]),
            last_updated_at=_time(got["lastUpdatedAt"]),
            runtime_status=got["runtimeStatus"],
            properties=got["properties"],
        )

    async def terminate(req: Any) -> Any:
        await api.terminate(req.workflow_component, req.instance_id)
        return empty_pb2.Empty()

    async def raise_event(req: Any) -> Any:
        await api.raise_event(
            req.workflow_component, req.instance_id, req.event_name, _text(req.event_data)
        )
        return empty_pb2.Empty()

    async def pause(req: Any) -> Any:
        await api.pause(req.workflow_component, req.instance_id)
        return empty_pb2.Empty()

    async def resume(req: Any) -> Any:
        await api.resume(req.workflow_component, req.instance_id)
        return empty_pb2.Empty()

    async def purge(req: Any) -> Any:
        await api.purge(req.workflow_component, req.instance_id)
        return empty_pb2.Empty()

    methods = {
        "Start": start,
        "Get": get,
        "Terminate": terminate,
        "RaiseEvent": raise_event,
        "Pause": pause,
        "Resume": resume,
        "Purge": purge,
    }
    return {
        f"{verb}Workflow{version}": fn
        for verb, fn in methods.items()
        for version in ("Beta1", "Alpha1")
    }
