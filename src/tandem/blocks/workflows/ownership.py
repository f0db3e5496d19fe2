"""Instance ownership across an app's replicas, through actor placement.

An instance id is owned by the placement owner of (the app's internal workflow actor
type, instance id), hosted by each sidecar whose app has connected a workflow worker. Only
the owner runs an instance: it alone hands out its turns, commits its record and arms its
timers. Every operation on an instance (start, get, wait, raise, terminate, suspend,
resume, purge, history, rerun, and the messages instances send each other) runs at the
owner: here, or at another sidecar through the actors' forwarding path
(``ActorService.invoke_internal``), retried while placement settles.

Placement changes follow the actors' rules (``docs/design/actors.md``): after a Prepare,
the engine stops running what moves away before the change is acknowledged (its commit
under way completes first; answers still out are dropped); after the Commit, each host
takes up, from the store, the instances that arrived. A host that loses its stream or its
lease stops everything and takes its instances up again when it serves again.

Without a control plane there is one sidecar and it owns everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import grpc
import orjson
from dapr.ext.workflow._durabletask.internal import orchestration_pb2 as opb
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb

from tandem.blocks.actors.engine import NotOwner
from tandem.blocks.actors.service import ActorService, Placement
from tandem.blocks.app_channel import AppResponse
from tandem.blocks.errors import DaprError
from tandem.blocks.workflows.engine import WorkflowEngine
from tandem.blocks.workflows.record import PENDING, Record, decode, encode
from tandem.observability.metrics import RuntimeMetrics

# A wait at another sidecar is asked in pieces this long (a forwarded call has a deadline,
# and the owner may change meanwhile).
WAIT_PIECE = 20.0
PLACEMENT_WAIT = 10.0  # how long a call waits for the placement stream to open
# How long a call keeps trying to reach an instance's owner (each try is the actors' own,
# retried for 10 s): long enough for a dead replica's lease to run out and its instances
# to move.
ROUTE_DEADLINE = 30.0
UNROUTED = frozenset({"ERR_ACTOR_NO_ADDRESS", "ERR_ACTOR_NO_PLACEMENT"})
# Envoy's answers when the owner's runtime could not be reached at all (the call never got
# there, so it is safe to send again): its sidecar died and placement has not moved on yet.
NOT_REACHED = ("upstream connect error", "no healthy upstream", "couldn't find service")
LOST = ("upstream connection reset",)
# Operations that may run twice: reads, and messages (their receivers are idempotent).
REPEATABLE = frozenset({"state", "wait", "history", "deliver"})

UNTIL: dict[str, Callable[[Record], bool]] = {
    "started": lambda r: r.status != PENDING,
    "completed": lambda r: r.terminal,
}


class Workflows:
    """What the APIs call: the engine's operations, each run at the instance's owner."""

    def __init__(
        self, engine: WorkflowEngine, actors: ActorService | None = None, actor_type: str = ""
    ) -> None:
        self.engine = engine
        self._actors = actors  # None: no placement, every instance runs here
        self._type = actor_type
        if actors is not None:
            engine.use_ownership(self._owns, self)
            actors.serve_internal(actor_type, self._serve)

    # --- what runs where the worker is connected --------------------------------------------

    @property
    def metrics(self) -> RuntimeMetrics:
        return self.engine.metrics

    @property
    def connected_workers(self) -> int:
        return self.engine.connected_workers

    def measure(self, operation: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self.engine.measure(operation)

    def work_items(self) -> AsyncIterator[spb.WorkItem]:
        return self.engine.work_items()

    async def complete_activity(self, response: spb.ActivityResponse) -> None:
        await self.engine.complete_activity(response)

    async def complete_turn(self, response: spb.WorkflowResponse) -> None:
        self.engine.accept_turn(response)

    async def listing(self) -> dict[str, list[Any]]:
        return await self.engine.listing()  # the shared index: every replica's instances

    async def close(self) -> None:
        await self.engine.close()

    # --- placement (ActorWiring's PlacementWatcher) -----------------------------------------

    async def moved(self) -> None:
        await self.engine.release()

    async def arrived(self) -> None:
        await self.engine.adopt()

    def _owns(self, instance_id: str) -> bool:
        assert self._actors is not None
        placement = self._actors.placement
        return placement is not None and placement.serves(self._type, instance_id)

    # --- operations on one instance, at its owner -------------------------------------------

    async def start(
        self,
        instance_id: str,
        name: str,
        input: str | None,
        *,
        scheduled_start: datetime | None = None,
        parent: opb.ParentInstanceInfo | None = None,
        execution_id: str | None = None,
    ) -> str:
        args = {
            "name": name,
            "input": input,
            "scheduledStart": None if scheduled_start is None else scheduled_start.isoformat(),
            "parent": None if parent is None else parent.SerializeToString().hex(),
            "executionId": execution_id,
        }
        await self._call(instance_id, "start", args)
        return instance_id

    async def state(self, instance_id: str) -> Record | None:
        return _record(await self._call(instance_id, "state", {}))

    async def wait(self, instance_id: str, until: str, timeout: float | None) -> Record | None:
        """The record once it has ``until`` (``started``/``completed``); None: no such
        instance. TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            piece = WAIT_PIECE
            if deadline is not None:
                piece = min(piece, deadline - time.monotonic())
                if piece <= 0:
                    raise TimeoutError
            answer = await self._call(instance_id, "wait", {"until": until, "timeout": piece})
            if answer != "timeout":
                return _record(answer)

    async def raise_event(self, instance_id: str, name: str, input: str | None) -> None:
        await self._call(instance_id, "raise", {"name": name, "input": input})

    async def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        await self._call(instance_id, "terminate", {"output": output, "recursive": recursive})

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        await self._call(instance_id, "suspend", {"reason": reason})

    async def resume(self, instance_id: str, reason: str | None) -> None:
        await self._call(instance_id, "resume", {"reason": reason})

    async def purge(self, instance_id: str, recursive: bool, force: bool = False) -> int:
        return int(await self._call(instance_id, "purge", {"recursive": recursive, "force": force}))

    async def history(self, instance_id: str) -> list[Any]:
        blob = await self._call(instance_id, "history", {})
        msg = spb.GetInstanceHistoryResponse()
        msg.ParseFromString(bytes.fromhex(blob))
        return list(msg.events)

    async def rerun(
        self,
        source_id: str,
        event_id: int,
        new_id: str,
        input: str | None,
        *,
        overwrite_input: bool,
        new_child_id: str = "",
    ) -> str:
        args = {
            "eventId": event_id,
            "newId": new_id,
            "input": input,
            "overwrite": overwrite_input,
            "newChildId": new_child_id,
        }
        return str(await self._call(source_id, "rerun", args))

    # Peers: what one instance asks of another.

    async def deliver(self, target: str, sender: dict[str, str], msg: dict[str, Any]) -> None:
        await self._call(target, "deliver", {"sender": sender, "msg": msg})

    async def create(self, rec: Record) -> None:
        await self._call(rec.instance_id, "create", {"record": encode(rec).decode()})

    # --- the routing ------------------------------------------------------------------------

    async def _call(self, instance_id: str, op: str, args: dict[str, Any]) -> Any:
        if self._actors is None:
            return await self._run(op, instance_id, args)
        placement = await self._placement()
        if placement.committed.is_set() and placement.route(self._type, instance_id) == (
            self._actors.host
        ):
            with contextlib.suppress(NotOwner):  # moving: ask through placement
                return await self._run(op, instance_id, args)
        deadline = time.monotonic() + ROUTE_DEADLINE
        while True:
            try:
                resp = await self._actors.invoke_internal(
                    self._type, instance_id, op, orjson.dumps(args)
                )
                break
            except DaprError as exc:
                # A replica died: placement moves its instances once its lease runs out.
                if not _unrouted(exc, op in REPEATABLE) or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)
        answer = orjson.loads(resp.body)
        error = answer.get("error")
        if error is not None:
            raise DaprError(
                error["code"],
                error["message"],
                http_status=error["http"],
                grpc_status=grpc.StatusCode[error["grpc"]],
            )
        return answer.get("value")

    async def _placement(self) -> Placement:
        assert self._actors is not None
        deadline = time.monotonic() + PLACEMENT_WAIT
        while (placement := self._actors.placement) is None:
            if time.monotonic() >= deadline:
                raise DaprError("ERR_ACTOR_NO_PLACEMENT", "placement is not available yet")
            await asyncio.sleep(0.05)
        return placement

    async def _serve(self, instance_id: str, op: str, body: bytes) -> AppResponse:
        """An operation another sidecar (or this one) routed here as the owner."""
        if not self.engine.owns(instance_id):
            raise NotOwner(f"workflow {instance_id} is not placed on this host now")
        try:
            value = await self._run(op, instance_id, orjson.loads(body) if body else {})
        except DaprError as exc:
            error = {
                "code": exc.error_code,
                "message": exc.message,
                "http": exc.http_status,
                "grpc": exc.grpc_status.name,
            }
            return AppResponse(200, orjson.dumps({"error": error}))
        return AppResponse(200, orjson.dumps({"value": value}))

    async def _run(self, op: str, instance_id: str, args: dict[str, Any]) -> Any:
        """``op`` on this host's engine; the answer as JSON-ready values."""
        handler = _OPS.get(op)
        if handler is None:
            raise DaprError("ERR_BAD_REQUEST", f"unknown workflow operation {op!r}")
        return await handler(self.engine, instance_id, args)


def _unrouted(exc: DaprError, repeatable: bool) -> bool:
    if exc.error_code in UNROUTED:
        return True
    if exc.error_code != "ERR_DIRECT_INVOKE":
        return False
    # A connection lost mid-call may have done the work: only repeatable calls go again.
    return any(m in exc.message for m in (*NOT_REACHED, *(LOST if repeatable else ())))


def _record(value: Any) -> Record | None:
    return None if value is None else decode(value.encode())


def _view(rec: Record | None) -> str | None:
    """An instance's metadata for a get or a wait (its history stays at the owner)."""
    if rec is None:
        return None
    return encode(dataclasses.replace(rec, history=[], inbox=[], outbox=[])).decode()


async def _start(engine: WorkflowEngine, instance_id: str, a: dict[str, Any]) -> None:
    parent = None
    if a.get("parent"):
        parent = opb.ParentInstanceInfo()
        parent.ParseFromString(bytes.fromhex(a["parent"]))
    scheduled = a.get("scheduledStart")
    await engine.start(
        instance_id,
        a["name"],
        a.get("input"),
        scheduled_start=None if scheduled is None else datetime.fromisoformat(scheduled),
        parent=parent,
        execution_id=a.get("executionId"),
    )


async def _state(engine: WorkflowEngine, instance_id: str, a: dict[str, Any]) -> str | None:
    return _view(await engine.state(instance_id))


async def _wait(engine: WorkflowEngine, instance_id: str, a: dict[str, Any]) -> str | None:
    try:
        return _view(await engine.wait(instance_id, UNTIL[a["until"]], float(a["timeout"])))
    except TimeoutError:
        return "timeout"


async def _history(engine: WorkflowEngine, instance_id: str, a: dict[str, Any]) -> str:
    events = await engine.history(instance_id)
    return spb.GetInstanceHistoryResponse(events=events).SerializeToString().hex()


async def _rerun(engine: WorkflowEngine, instance_id: str, a: dict[str, Any]) -> str:
    return await engine.rerun(
        instance_id,
        int(a["eventId"]),
        a["newId"],
        a.get("input"),
        overwrite_input=bool(a.get("overwrite")),
        new_child_id=a.get("newChildId") or "",
    )


async def _create(engine: WorkflowEngine, instance_id: str, a: dict[str, Any]) -> None:
    await engine.create(decode(a["record"].encode()))


_OPS: dict[str, Callable[[WorkflowEngine, str, dict[str, Any]], Awaitable[Any]]] = {
    "start": _start,
    "state": _state,
    "wait": _wait,
    "raise": lambda e, i, a: e.raise_event(i, a["name"], a.get("input")),
    "terminate": lambda e, i, a: e.terminate(i, a.get("output"), bool(a.get("recursive"))),
    "suspend": lambda e, i, a: e.suspend(i, a.get("reason")),
    "resume": lambda e, i, a: e.resume(i, a.get("reason")),
    "purge": lambda e, i, a: e.purge(i, bool(a.get("recursive")), bool(a.get("force"))),
    "history": _history,
    "rerun": _rerun,
    "create": _create,
    "deliver": lambda e, i, a: e.deliver(i, a["sender"], a["msg"]),
}
