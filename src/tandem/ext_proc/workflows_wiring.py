"""Puts the workflow block together in a runtime: store, engine, recovery, instance
ownership through actor placement (``blocks/workflows/ownership.py``), and its durable
timers in the control plane's scheduler (kind ``workflow-timer``), fired at the instance's
owner through the placement stream."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from tandem.blocks.actors.engine import NotOwner
from tandem.blocks.actors.state import ActorState
from tandem.blocks.workflows.engine import WorkflowEngine
from tandem.blocks.workflows.management import WorkflowApi
from tandem.blocks.workflows.ownership import Workflows
from tandem.blocks.workflows.settings import retention_by_status
from tandem.blocks.workflows.store import WorkflowStore, workflow_actor_type
from tandem.ext_proc import workflows_grpc_api, workflows_http
from tandem.ext_proc.actors_wiring import ActorWiring
from tandem.ext_proc.grpc_api import Rpc
from tandem.ext_proc.router import Router
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.placement.service import WORKFLOW_TIMER_KIND
from tandem.resources.configuration import WorkflowSettings

log = logging.getLogger("tandem.workflows")
TIMER_PREFIX = "timer-"


@dataclass(slots=True)
class WorkflowWiring:
    engine: Workflows | None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """Resume unfinished instances in the background (the worker may connect first:
        the engine's calls wait for recovery)."""
        if self.engine is not None:
            self._tasks.append(
                asyncio.create_task(self.engine.engine.recover(), name="workflow-recovery")
            )

    def register(self, router: Router, rpcs: dict[str, Rpc]) -> None:
        """The HTTP routes and the Dapr gRPC methods of the management API."""
        api = WorkflowApi(lambda: self.engine)
        workflows_http.register(router, api)
        rpcs.update(workflows_grpc_api.rpcs(api))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.engine is not None:
            await self.engine.close()


def wire_workflows(
    state: ActorState | None,
    actors: ActorWiring,
    *,
    app_id: str,
    namespace: str,
    settings: WorkflowSettings | None = None,
    metrics: RuntimeMetrics = NO_METRICS,
) -> WorkflowWiring:
    if state is None:
        return WorkflowWiring(engine=None)
    actor_type = workflow_actor_type(namespace, app_id)
    settings = settings or WorkflowSettings()
    engine = WorkflowEngine(
        WorkflowStore(state, actor_type),
        max_workflows=settings.max_concurrent_workflow_invocations or 0,
        max_activities=settings.max_concurrent_activity_invocations or 0,
        retention=retention_by_status(settings.retention),
        metrics=metrics,
    )
    if actors.control_plane is None:
        # One sidecar owns everything; timers stay in memory, re-armed on recovery.
        return WorkflowWiring(engine=Workflows(engine))
    workflows = Workflows(engine, actors.service, actor_type)
    actors.watch_placement(workflows, actor_type, engine.running)

    async def set_timer(instance_id: str, timer_id: int, at: datetime) -> None:
        answer = await actors.call_scheduler(
            "Register",
            {
                "kind": WORKFLOW_TIMER_KIND,
                "actorType": actor_type,
                "actorId": instance_id,
                "name": f"{TIMER_PREFIX}{timer_id}",
                "dueTime": at.isoformat(),
            },
        )
        if "error" in answer:
            raise RuntimeError(f"the scheduler refused a workflow timer: {answer.get('message')}")

    async def fire(kind: str, instance_id: str, name: str, payload: bytes) -> str:
        if not name.startswith(TIMER_PREFIX):
            return "cancel"
        try:
            await engine.fire_timer(instance_id, int(name.removeprefix(TIMER_PREFIX)))
        except NotOwner:
            return "unroutable"  # moving: the scheduler tries again at the new owner
        return "delivered"

    async def worker_connected() -> None:
        # As in Dapr, the sidecar hosts its app's workflows once a worker connects: sidecars
        # without workflow apps never join placement for them.
        await actors.host_internal(actor_type, fire)

    engine.use_timers(set_timer)
    engine.on_worker(worker_connected)
    return WorkflowWiring(engine=workflows)
