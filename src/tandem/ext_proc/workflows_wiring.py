"""Puts the workflow block together in a runtime: store, engine, recovery."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from tandem.blocks.actors.state import ActorState
from tandem.blocks.workflows.engine import WorkflowEngine
from tandem.blocks.workflows.store import WorkflowStore, workflow_actor_type

log = logging.getLogger("tandem.workflows")


@dataclass(slots=True)
class WorkflowWiring:
    engine: WorkflowEngine | None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """Resume unfinished instances in the background (the worker may connect first:
        the engine's calls wait for recovery)."""
        if self.engine is not None:
            self._tasks.append(asyncio.create_task(self.engine.recover(), name="workflow-recovery"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.engine is not None:
            await self.engine.close()


def wire_workflows(state: ActorState | None, *, app_id: str, namespace: str) -> WorkflowWiring:
    if state is None:
        return WorkflowWiring(engine=None)
    store = WorkflowStore(state, workflow_actor_type(namespace, app_id))
    return WorkflowWiring(engine=WorkflowEngine(store))
