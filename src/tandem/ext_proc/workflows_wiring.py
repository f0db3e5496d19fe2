"""Puts the workflow block together in a runtime: store, engine, recovery, instance
ownership through actor placement (``blocks/workflows/ownership.py``), and its durable
timers in the control plane's scheduler (kind ``workflow-timer``), fired at the instance's
owner through the placement stream."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tandem.blocks.workflows.management import WorkflowApi
from tandem.ext_proc import workflows_grpc_api, workflows_http
from tandem.ext_proc.actors_wiring import ActorWiring
from tandem.ext_proc.grpc_api import Rpc
from tandem.ext_proc.router import Router
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.resources.configuration import WorkflowSettings
from tandem.xds.contract import WORKFLOW_TIMER_KIND

if TYPE_CHECKING:
    from tandem.blocks.actors.state import ActorState
    from tandem.blocks.workflows.ownership import Workflows

log = logging.getLogger("tandem.workflows")
TIMER_PREFIX = "timer-"


@dataclass(slots=True)
class WorkflowWiring:
    """The engine is built on its first use (a worker or client of the task hub, or the
    management API): it loads the SDK's durable-task protos, which import the whole
    ``dapr.ext.workflow`` package (~18 MB), and a sidecar whose app runs no workflow never
    needs them. Its unfinished instances are recovered then: none can move before a worker
    connects, and a sidecar hosts its app's workflows only from then on."""

    build: Callable[[], Workflows] | None
    _engine: Workflows | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def engine(self) -> Workflows | None:
        if self._engine is None and self.build is not None:
            self._engine = self.build()
            # Resume unfinished instances in the background (the engine's calls wait for
            # recovery).
            self._tasks.append(
                asyncio.create_task(self._engine.engine.recover(), name="workflow-recovery")
            )
        return self._engine

    def register(self, router: Router, rpcs: dict[str, Rpc]) -> None:
        """The HTTP routes and the Dapr gRPC methods of the management API."""
        api = WorkflowApi(lambda: self.engine)
        workflows_http.register(router, api)
        rpcs.update(workflows_grpc_api.rpcs(api))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._engine is not None:
            await self._engine.close()


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
        return WorkflowWiring(build=None)

    return WorkflowWiring(
        build=functools.partial(
            _build, state, actors, app_id, namespace, settings or WorkflowSettings(), metrics
        )
    )


def _build(
    state: ActorState,
    actors: ActorWiring,
    app_id: str,
    namespace: str,
    settings: WorkflowSettings,
    metrics: RuntimeMetrics,
) -> Workflows:
    from tandem.blocks.actors.engine import NotOwner
    from tandem.blocks.workflows.engine import WorkflowEngine
    from tandem.blocks.workflows.ownership import Workflows
    from tandem.blocks.workflows.settings import retention_by_status
    from tandem.blocks.workflows.store import WorkflowStore, workflow_actor_type

    actor_type = workflow_actor_type(namespace, app_id)
    engine = WorkflowEngine(
        WorkflowStore(state, actor_type),
        max_workflows=settings.max_concurrent_workflow_invocations or 0,
        max_activities=settings.max_concurrent_activity_invocations or 0,
        retention=retention_by_status(settings.retention),
        metrics=metrics,
    )
    if actors.control_plane is None:
        # One sidecar owns everything; timers stay in memory, re-armed on recovery.
        return Workflows(engine)
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
    return workflows
