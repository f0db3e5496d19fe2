"""Envoy's ext_proc service on the runtime's gRPC server, loaded on its first stream: its
servicer loads Envoy's ext_proc and core protos, start-up time that a sidecar whose Envoy
hands the API to the HTTP/1.1 door (`tandem run`'s default) never needs (issue 21)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from tandem.ext_proc.lazy_service import LazyService

if TYPE_CHECKING:
    from tandem.ext_proc.extproc import Dispatch

EXT_PROC_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/"


class LazyExtProc(LazyService):
    def __init__(self, dispatch: Dispatch, default_app_id: str) -> None:
        super().__init__(EXT_PROC_PATH)
        self._dispatch = dispatch
        self._app_id = default_app_id

    def register(self, server: grpc.aio.Server) -> None:
        from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

        from tandem.ext_proc.extproc import ExtProcServicer

        ep_grpc.add_ExternalProcessorServicer_to_server(
            ExtProcServicer(self._dispatch, self._app_id), server
        )
