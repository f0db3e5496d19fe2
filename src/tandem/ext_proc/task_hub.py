"""The durable-task ``TaskHubSidecarService`` on the runtime's gRPC server, loaded on its
first call: its servicer (``workflow_grpc.py``) loads the workflow SDK's protos, which
import the whole ``dapr.ext.workflow`` package, and a sidecar whose app runs no workflow
never needs them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc

from tandem.xds.contract import TASK_HUB_PATH

if TYPE_CHECKING:
    from tandem.blocks.workflows.ownership import Workflows
    from tandem.ext_proc.workflow_grpc import TaskHubServicer


class _Registrations:
    """Stands in for the server while the generated code registers the service."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass  # the generic handler above serves the same methods


class LazyTaskHub(grpc.GenericRpcHandler):
    def __init__(self, engine: Callable[[], Workflows | None]) -> None:
        self._engine = engine
        self._servicer: TaskHubServicer | None = None
        self._handlers: list[grpc.GenericRpcHandler] = []

    def servicer(self) -> TaskHubServicer:
        if self._servicer is None:
            from tandem.ext_proc.workflow_grpc import add_to_server

            registrations = _Registrations()
            self._servicer = add_to_server(cast(grpc.aio.Server, registrations), self._engine)
            self._handlers = registrations.handlers
        return self._servicer

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = cast(str, handler_call_details.method)  # type: ignore[attr-defined]
        if not method.startswith(TASK_HUB_PATH):
            return None
        self.servicer()
        for handler in self._handlers:
            found = handler.service(handler_call_details)
            if found is not None:
                return found
        return None
