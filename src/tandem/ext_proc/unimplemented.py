"""Dapr APIs this runtime does not serve yet, answered one way until each block exists.

HTTP: 501 with Dapr's ``ERR_API_UNIMPLEMENTED`` naming the API, through either front door
(both end in the router). gRPC: UNIMPLEMENTED naming the API, for every method of the Dapr
service without an implementation and for the durable-task service of workflows. A block
that lands removes its prefixes from :data:`HTTP_PREFIXES`; its gRPC methods leave the
unimplemented set by being implemented.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.descriptor import MethodDescriptor

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

log = logging.getLogger("tandem.runtime")

# (path prefix, API name): every route of Dapr's HTTP API under these prefixes.
HTTP_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/v1.0/workflows", "workflows"),
    ("/v1.0-beta1/workflows", "workflows"),
    ("/v1.0-alpha1/workflows", "workflows"),
)
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

# The Dapr proto file a method's request type lives in names its API.
_API_BY_PROTO_FILE = {
    "invoke": "service invocation",
    "state": "state",
    "pubsub": "pub/sub",
    "binding": "bindings",
    "secret": "secrets",
    "actors": "actors",
    "configuration": "configuration",
    "lock": "distributed lock",
    "crypto": "cryptography",
    "metadata": "metadata",
    "workflow": "workflows",
    "dapr": "shutdown",
    "jobs": "jobs",
    "ai": "conversation",
    "search": "search",
    "vector": "vector store",
    "binarystore": "binary store",
}


def message(api: str) -> str:
    return f"the {api} API is not implemented by this Tandem runtime yet"


def error(api: str) -> DaprError:
    return DaprError("ERR_API_UNIMPLEMENTED", message(api))


def register_http(router: Router) -> None:
    """Add the 501 routes, before the blocks add theirs: a block's route for the same path
    and method replaces the 501, and any other route under a prefix takes precedence (the
    router tries literal and parameter segments before a rest parameter)."""
    for prefix, api in HTTP_PREFIXES:
        router.add(_METHODS, f"{prefix}/{{rest...}}", _handler(api))
        router.add(_METHODS, prefix, _handler(api))


def _handler(api: str) -> Any:
    async def unimplemented(req: ApiRequest) -> ApiResponse:
        raise error(api)

    return unimplemented


def grpc_message_for(name: str) -> str:
    """The UNIMPLEMENTED message for the Dapr service's method ``name``."""
    from dapr.proto.runtime.v1 import dapr_pb2

    return grpc_message(dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods_by_name[name])


def api_of(method: MethodDescriptor) -> str:
    """The API a Dapr gRPC method belongs to, e.g. ``InvokeBinding`` -> ``bindings``."""
    stem = method.input_type.file.name.rsplit("/", 1)[-1].removesuffix(".proto")
    return _API_BY_PROTO_FILE.get(stem, method.name)


def grpc_message(method: MethodDescriptor) -> str:
    return f"{message(api_of(method))} ({method.name})"


class WorkflowSidecarServicer:
    """The durable-task service (``TaskHubSidecarService``) the SDK's workflow client and
    worker call. Management calls fail at once with UNIMPLEMENTED naming workflows.

    ``Hello`` answers, and ``GetWorkItems`` stays open without work: the SDK's worker
    retries a failed Hello forever (``WorkflowRuntime.start()`` would hang), and re-opens
    a failed work-item stream at once, in a loop. An open, idle stream is what the worker
    sees from a Dapr sidecar with no workflows to run; the app's own workflow calls then
    fail fast, naming the API.
    """

    def __init__(self) -> None:
        from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as pb

        service = pb.DESCRIPTOR.services_by_name["TaskHubSidecarService"]
        for method in service.methods:
            if method.name not in ("Hello", "GetWorkItems"):
                setattr(self, method.name, _abort(f"{message('workflows')} ({method.name})"))

    async def Hello(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 - gRPC's name
        return empty_pb2.Empty()

    async def GetWorkItems(  # noqa: N802 - gRPC's name
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        log.warning("an app started a workflow worker: %s", message("workflows"))
        # Idle until the client goes away (the SDK cancels the stream on shutdown), which
        # cancels this handler.
        await asyncio.get_running_loop().create_future()
        yield  # pragma: no cover - makes this an async generator


def _abort(text: str) -> Any:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, text)

    return unary


def add_workflow_servicer(server: grpc.aio.Server) -> None:
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

    pb_grpc.add_TaskHubSidecarServiceServicer_to_server(WorkflowSidecarServicer(), server)  # type: ignore[no-untyped-call]
