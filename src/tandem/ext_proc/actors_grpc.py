"""The actor RPCs of ``dapr.proto.runtime.v1.Dapr``: proto in, proto out, over the same
:class:`~tandem.blocks.actors.service.ActorService` as the HTTP API.

Bytes fields (reminder and timer ``data``) travel as base64 JSON strings to the app, as
Dapr sends them and as the SDKs decode them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from dapr.proto.runtime.v1 import actors_pb2
from google.protobuf import any_pb2, empty_pb2

from tandem.blocks.actors.service import ActorService
from tandem.blocks.actors.state import ActorStateOp

_EMPTY = empty_pb2.Empty()


def _b64(data: bytes) -> str | None:
    return base64.b64encode(data).decode() if data else None


def _schedule(found: dict[str, Any]) -> dict[str, Any]:
    """The schedule fields of a reminder or timer as registered, for its proto answer."""
    return {
        "due_time": found.get("dueTime") or "",
        "period": found.get("period") or "",
        "ttl": found.get("ttl") or "",
        "data": any_pb2.Any(value=json.dumps(found.get("data")).encode()),
    }


def rpcs(service: ActorService) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    async def invoke(r: actors_pb2.InvokeActorRequest) -> actors_pb2.InvokeActorResponse:
        resp = await service.invoke(r.actor_type, r.actor_id, r.method, r.data, dict(r.metadata))
        return actors_pb2.InvokeActorResponse(data=resp.body)

    async def get_state(r: actors_pb2.GetActorStateRequest) -> actors_pb2.GetActorStateResponse:
        data = await service.get_state(r.actor_type, r.actor_id, r.key)
        return actors_pb2.GetActorStateResponse(data=data or b"")

    async def transact(r: actors_pb2.ExecuteActorStateTransactionRequest) -> empty_pb2.Empty:
        ops = [
            ActorStateOp(
                operation=op.operationType.lower(),
                key=op.key,
                value=op.value.value,
                metadata=dict(op.metadata),
            )
            for op in r.operations
        ]
        await service.transact_state(r.actor_type, r.actor_id, ops)
        return _EMPTY

    async def register_timer(r: actors_pb2.RegisterActorTimerRequest) -> empty_pb2.Empty:
        body = {
            "dueTime": r.due_time,
            "period": r.period,
            "ttl": r.ttl,
            "callback": r.callback,
            "data": _b64(r.data),
        }
        await service.create_timer(r.actor_type, r.actor_id, r.name, body)
        return _EMPTY

    async def unregister_timer(r: actors_pb2.UnregisterActorTimerRequest) -> empty_pb2.Empty:
        await service.delete_timer(r.actor_type, r.actor_id, r.name)
        return _EMPTY

    async def register_reminder(r: actors_pb2.RegisterActorReminderRequest) -> empty_pb2.Empty:
        body: dict[str, Any] = {
            "dueTime": r.due_time,
            "period": r.period,
            "ttl": r.ttl,
            "data": _b64(r.data),
        }
        if r.HasField("overwrite"):
            body["overwrite"] = r.overwrite
        await service.create_reminder(r.actor_type, r.actor_id, r.name, body)
        return _EMPTY

    async def unregister_reminder(r: actors_pb2.UnregisterActorReminderRequest) -> empty_pb2.Empty:
        await service.delete_reminder(r.actor_type, r.actor_id, r.name)
        return _EMPTY

    async def get_reminder(
        r: actors_pb2.GetActorReminderRequest,
    ) -> actors_pb2.GetActorReminderResponse:
        found = await service.get_reminder(r.actor_type, r.actor_id, r.name)
        return actors_pb2.GetActorReminderResponse(
            actor_type=r.actor_type, actor_id=r.actor_id, **_schedule(found)
        )

    async def list_reminders(
        r: actors_pb2.ListActorRemindersRequest,
    ) -> actors_pb2.ListActorRemindersResponse:
        found = await service.list_reminders(r.actor_type, r.actor_id)
        return actors_pb2.ListActorRemindersResponse(
            reminders=[
                actors_pb2.NamedActorReminder(
                    name=f["name"],
                    reminder=actors_pb2.ActorReminder(
                        actor_type=f["actorType"], actor_id=f["actorID"], **_schedule(f)
                    ),
                )
                for f in found
            ]
        )

    async def unregister_by_type(
        r: actors_pb2.UnregisterActorRemindersByTypeRequest,
    ) -> actors_pb2.UnregisterActorRemindersByTypeResponse:
        await service.delete_reminders(r.actor_type, r.actor_id)
        return actors_pb2.UnregisterActorRemindersByTypeResponse()

    async def get_timer(r: actors_pb2.GetActorTimerRequest) -> actors_pb2.GetActorTimerResponse:
        found = service.get_timer(r.actor_type, r.actor_id, r.name)
        return actors_pb2.GetActorTimerResponse(
            actor_type=r.actor_type,
            actor_id=r.actor_id,
            callback=found.get("callback") or "",
            **_schedule(found),
        )

    async def list_timers(
        r: actors_pb2.ListActorTimersRequest,
    ) -> actors_pb2.ListActorTimersResponse:
        return actors_pb2.ListActorTimersResponse(
            timers=[
                actors_pb2.NamedActorTimer(
                    name=f["name"],
                    timer=actors_pb2.ActorTimer(
                        actor_type=f["actorType"],
                        actor_id=f["actorID"],
                        callback=f.get("callback") or "",
                        **_schedule(f),
                    ),
                )
                for f in service.list_timers(r.actor_type, r.actor_id)
            ]
        )

    return {
        "InvokeActor": invoke,
        "GetActorState": get_state,
        "ExecuteActorStateTransaction": transact,
        "RegisterActorTimer": register_timer,
        "UnregisterActorTimer": unregister_timer,
        "RegisterActorReminder": register_reminder,
        "UnregisterActorReminder": unregister_reminder,
        "GetActorReminder": get_reminder,
        "ListActorReminders": list_reminders,
        "UnregisterActorRemindersByType": unregister_by_type,
        "GetActorTimer": get_timer,
        "ListActorTimers": list_timers,
    }
