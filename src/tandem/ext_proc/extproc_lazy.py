"""Envoy's ext_proc service on the runtime's gRPC server, loaded on its first stream: its
servicer loads Envoy's ext_proc and core protos, start-up time that a sidecar whose Envoy
hands the API to the HTTP/1.1 door (`tandem run`'s default) never needs (issue 21)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import grpc

from tandem.ext_proc.task_hub import _Registrations

if TYPE_CHECKING:
    from tandem.ext_proc.extproc import Dispatch

EXT_PROC_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/"


class LazyExtProc(grpc.GenericRpcHandler):
    def __init__(self, dispatch: Dispatch, default_app_id: str) -> None:
        self._dispatch = dispatch
        self._app_id = default_app_id
        self._handlers: list[grpc.GenericRpcHandler] | None = None

    def _load(self) -> list[grpc.GenericRpcHandler]:
        from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

        from tandem.ext_proc.extproc import ExtProcServicer

        registrations = _Registrations()
        ep_grpc.add_ExternalProcessorServicer_to_server(
            ExtProcServicer(self._dispatch, self._app_id),
            cast(grpc.aio.Server, registrations),
        )
        return registrations.handlers

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = cast(str, handler_call_details.method)  # type: ignore[attr-defined]
        if not method.startswith(EXT_PROC_PATH):
            return None
        if self._handlers is None:
            self._handlers = self._load()
        for handler in self._handlers:
            found = handler.service(handler_call_details)
            if found is not None:
                return found
        return None
