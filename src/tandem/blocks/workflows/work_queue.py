"""Work items waiting for the app's worker streams, within the Configuration's limits
(``maxConcurrentWorkflowInvocations``, ``maxConcurrentActivityInvocations``: how many
turns and activities may be out at once on this sidecar; 0 is no limit).

An item handed out stays "in flight" until answered; if its stream ends first it goes back
to the front of its queue for the next stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb

WORKFLOW, ACTIVITY = "workflow", "activity"


def kind_of(item: spb.WorkItem) -> str:
    return ACTIVITY if item.HasField("activityRequest") else WORKFLOW


class WorkQueue:
    def __init__(self, max_workflows: int = 0, max_activities: int = 0) -> None:
        self._limits = {WORKFLOW: max_workflows, ACTIVITY: max_activities}
        self._pending: dict[str, deque[tuple[str, spb.WorkItem]]] = {
            WORKFLOW: deque(),
            ACTIVITY: deque(),
        }
        self._out: dict[str, int] = {WORKFLOW: 0, ACTIVITY: 0}
        self._in_flight: dict[str, tuple[int, spb.WorkItem]] = {}  # token -> (stream, item)
        self._wake = asyncio.Event()

    def put(self, token: str, item: spb.WorkItem, *, front: bool = False) -> None:
        queue = self._pending[kind_of(item)]
        if front:
            queue.appendleft((token, item))
        else:
            queue.append((token, item))
        self._wake.set()

    def in_flight(self, kind: str) -> int:
        return self._out[kind]

    async def take(
        self, stream: int, current: Callable[[str, spb.WorkItem], bool]
    ) -> tuple[str, spb.WorkItem]:
        """The next item some limit allows; stale ones (``current`` false) are dropped."""
        while True:
            for kind in (WORKFLOW, ACTIVITY):
                queue = self._pending[kind]
                limit = self._limits[kind]
                while queue and (limit <= 0 or self._out[kind] < limit):
                    token, item = queue.popleft()
                    if not current(token, item):
                        continue
                    self._out[kind] += 1
                    self._in_flight[token] = (stream, item)
                    return token, item
            self._wake.clear()
            await self._wake.wait()

    def done(self, token: str) -> None:
        """An item was answered (or dropped): its slot frees."""
        found = self._in_flight.pop(token, None)
        if found is not None:
            self._out[kind_of(found[1])] -= 1
            self._wake.set()

    def release(self, stream: int) -> None:
        """A stream ended: what it left unanswered goes back, first in line."""
        for token, (owner, item) in list(self._in_flight.items()):
            if owner == stream:
                self.done(token)
                self.put(token, item, front=True)
