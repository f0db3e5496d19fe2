"""The ``InvokeBinding`` RPC: proto in, :class:`BindingsService` called, proto out."""

from __future__ import annotations

from typing import Any

from tandem.blocks.bindings.service import BindingsService
from tandem.ext_proc.grpc_api import Rpc, invocation_metadata


def rpcs(service: BindingsService) -> dict[str, Rpc]:
    from dapr.proto.runtime.v1 import binding_pb2

    async def invoke_binding(request: Any) -> Any:
        metadata = dict(request.metadata)
        call = invocation_metadata.get() or {}
        for key in ("traceparent", "tracestate"):
            if call.get(key) and key not in metadata:
                metadata[key] = call[key]
        resp = await service.invoke(request.name, request.operation, request.data, metadata)
        return binding_pb2.InvokeBindingResponse(
            data=resp.data or b"", metadata=dict(resp.metadata)
        )

    return {"InvokeBinding": invoke_binding}
