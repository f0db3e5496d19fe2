"""A gRPC service on the runtime's server that loads on its first call: its servicer's
protos (and what they import) cost start-up time that a sidecar never calling it should
not pay. Subclasses say which methods are theirs and how to register the servicer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc


class _Registrations:
    """Stands in for the server while the generated code registers the service."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass  # the generic handler above serves the same methods


class LazyService(grpc.GenericRpcHandler):
    """Serves the methods under ``prefix`` (``/package.Service/``), registering the real
    servicer (:meth:`register`) when the first of them is called."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._handlers: list[grpc.GenericRpcHandler] | None = None

    def register(self, server: grpc.aio.Server) -> None:
        """Add the servicer to ``server``, as the generated ``add_…_to_server`` does."""
        raise NotImplementedError

    def load(self) -> list[grpc.GenericRpcHandler]:
        """The servicer's handlers, registering it on the first call."""
        if self._handlers is None:
            registrations = _Registrations()
            self.register(cast(grpc.aio.Server, registrations))
            self._handlers = registrations.handlers
        return self._handlers

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = cast(str, handler_call_details.method)  # type: ignore[attr-defined]
        if not method.startswith(self._prefix):
            return None
        for handler in self.load():
            found = handler.service(handler_call_details)
            if found is not None:
                return found
        return None
