"""The durable-task ``TaskHubSidecarService`` on the runtime's gRPC server, loaded on its
first call: its servicer (``workflow_grpc.py``) loads the workflow SDK's protos, which
import the whole ``dapr.ext.workflow`` package, and a sidecar whose app runs no workflow
never needs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from tandem.ext_proc.lazy_service import LazyService
from tandem.xds.contract import TASK_HUB_PATH

if TYPE_CHECKING:
    from tandem.blocks.workflows.ownership import Workflows
    from tandem.ext_proc.workflow_grpc import TaskHubServicer


class LazyTaskHub(LazyService):
    def __init__(self, engine: Callable[[], Workflows | None]) -> None:
        super().__init__(TASK_HUB_PATH)
        self._engine = engine
        self._servicer: TaskHubServicer | None = None

    def register(self, server: grpc.aio.Server) -> None:
        from tandem.ext_proc.workflow_grpc import add_to_server

        self._servicer = add_to_server(server, self._engine)

    def servicer(self) -> TaskHubServicer:
        """The servicer itself (the HTTP door's bridged task-hub calls), loaded if need be."""
        self.load()
        assert self._servicer is not None
        return self._servicer
