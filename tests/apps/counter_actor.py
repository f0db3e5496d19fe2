"""The ``Counter`` actor of the actor tests, written the way Dapr's Python SDK examples write one.

Actor type ``Counter``: ``Add`` (state), ``Slow`` (logs enter/exit, for turn-based tests),
``Remind``/``Forget`` (a durable reminder), ``Tick`` (a timer). Every callback appends a
JSON line to ``$ACTOR_LOG`` with this process's ``$REPLICA`` name.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time

from dapr.actor import Actor, ActorInterface, Remindable, actormethod

LOG = os.environ.get("ACTOR_LOG", "")
REPLICA = os.environ.get("REPLICA", "r0")


def record(event: str, actor_id: str, **extra) -> None:
    if LOG:
        line = json.dumps(
            {"event": event, "id": actor_id, "replica": REPLICA, "t": time.time(), **extra}
        )
        with open(LOG, "a") as out:
            out.write(line + "\n")


class CounterInterface(ActorInterface):
    @actormethod(name="Add")
    async def add(self, by: int) -> int: ...

    @actormethod(name="Slow")
    async def slow(self, ms: int) -> str: ...

    @actormethod(name="Remind")
    async def remind(self, period_ms: int) -> None: ...

    @actormethod(name="Forget")
    async def forget(self) -> None: ...

    @actormethod(name="Tick")
    async def tick(self, period_ms: int) -> None: ...

    @actormethod(name="Chain")
    async def chain(self, ids: list) -> list: ...


class Counter(Actor, CounterInterface, Remindable):
    async def _on_activate(self) -> None:
        record("activate", self.id.id)

    async def _on_deactivate(self) -> None:
        record("deactivate", self.id.id)

    async def add(self, by: int) -> int:
        record("enter", self.id.id, method="Add")
        found, value = await self._state_manager.try_get_state("n")
        total = (value if found else 0) + by
        await self._state_manager.set_state("n", total)
        await self._state_manager.save_state()
        record("exit", self.id.id, method="Add", total=total)
        return total

    async def slow(self, ms: int) -> str:
        record("enter", self.id.id, method="Slow")
        await asyncio.sleep(ms / 1000)
        record("exit", self.id.id, method="Slow")
        return REPLICA

    async def remind(self, period_ms: int) -> None:
        await self.register_reminder(
            "beat",
            b"payload",
            datetime.timedelta(seconds=0),
            datetime.timedelta(milliseconds=period_ms),
        )

    async def forget(self) -> None:
        await self.unregister_reminder("beat")

    async def tick(self, period_ms: int) -> None:
        await self.register_timer(
            "tick",
            self.on_tick,
            {"n": 1},
            datetime.timedelta(seconds=0),
            datetime.timedelta(milliseconds=period_ms),
        )

    async def chain(self, ids: list) -> list:
        """Call the next actor of ``ids`` (which calls the next, ...): A -> B -> A."""
        if not ids:
            return [self.id.id]
        from dapr.actor import ActorId, ActorProxy

        nxt = ActorProxy.create("Counter", ActorId(ids[0]), CounterInterface)
        return [self.id.id, *await nxt.Chain(ids[1:])]

    async def on_tick(self, data) -> None:
        record("timer", self.id.id, data=data)

    async def receive_reminder(self, name, state, due_time, period, ttl=None) -> None:
        record("reminder", self.id.id, name=name, state=state.decode())
