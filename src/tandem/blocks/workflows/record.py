"""One workflow instance as stored: its metadata, committed history, inbox and outbox.

The whole record is one value under one key, so a turn's history, the inbox it consumed
and the messages it produced commit together or not at all. Pure: no I/O here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from dapr.ext.workflow._durabletask.internal import history_events_pb2 as hpb
from dapr.ext.workflow._durabletask.internal import orchestration_pb2 as opb
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb
from google.protobuf import timestamp_pb2, wrappers_pb2

S = opb.OrchestrationStatus
RUNNING = S.Value("ORCHESTRATION_STATUS_RUNNING")
COMPLETED = S.Value("ORCHESTRATION_STATUS_COMPLETED")
CONTINUED_AS_NEW = S.Value("ORCHESTRATION_STATUS_CONTINUED_AS_NEW")
FAILED = S.Value("ORCHESTRATION_STATUS_FAILED")
CANCELED = S.Value("ORCHESTRATION_STATUS_CANCELED")
TERMINATED = S.Value("ORCHESTRATION_STATUS_TERMINATED")
PENDING = S.Value("ORCHESTRATION_STATUS_PENDING")
SUSPENDED = S.Value("ORCHESTRATION_STATUS_SUSPENDED")
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED, TERMINATED})

# Dapr's HTTP names for the statuses (GET /v1.0/workflows/dapr/{id}: runtimeStatus).
STATUS_NAMES = {
    RUNNING: "RUNNING",
    COMPLETED: "COMPLETED",
    CONTINUED_AS_NEW: "CONTINUED_AS_NEW",
    FAILED: "FAILED",
    CANCELED: "CANCELED",
    TERMINATED: "TERMINATED",
    PENDING: "PENDING",
    SUSPENDED: "SUSPENDED",
}
STATUS_BY_NAME = {v: k for k, v in STATUS_NAMES.items()}


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(at: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    return ts


def event(at: datetime, event_id: int = -1, **kind: Any) -> hpb.HistoryEvent:
    return hpb.HistoryEvent(eventId=event_id, timestamp=timestamp(at), **kind)


def text(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


@dataclass(slots=True)
class Record:
    instance_id: str
    name: str
    status: int
    created: datetime
    updated: datetime
    execution_id: str
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: bytes = b""  # serialized TaskFailureDetails
    completed: datetime | None = None
    scheduled_start: datetime | None = None
    parent_id: str = ""
    suspended: bool = False
    history: list[hpb.HistoryEvent] = field(default_factory=list)
    inbox: list[hpb.HistoryEvent] = field(default_factory=list)
    # Messages for other instances, produced by a committed turn and delivered after it
    # (again after a crash: every kind is applied idempotently by its receiver).
    outbox: list[dict[str, Any]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def state(self, with_payloads: bool = True) -> opb.WorkflowState:
        out = opb.WorkflowState(
            instanceId=self.instance_id,
            name=self.name,
            workflowStatus=self.status,  # type: ignore[arg-type]
            createdTimestamp=timestamp(self.created),
            lastUpdatedTimestamp=timestamp(self.updated),
            executionId=text(self.execution_id),
        )
        if with_payloads:
            if self.input is not None:
                out.input.value = self.input
            if self.output is not None:
                out.output.value = self.output
        if self.custom_status is not None:
            out.customStatus.value = self.custom_status
        if self.failure:
            out.failureDetails.ParseFromString(self.failure)
        if self.completed is not None:
            out.completedTimestamp.CopyFrom(timestamp(self.completed))
        if self.scheduled_start is not None:
            out.scheduledStartTimestamp.CopyFrom(timestamp(self.scheduled_start))
        if self.parent_id:
            out.parentInstanceId.value = self.parent_id
        return out

    def index_entry(self) -> list[Any]:
        """``[name, status, created, completed, outbox pending]`` (times ISO 8601;
        completed or "")."""
        done = self.completed.isoformat() if self.completed is not None else ""
        pending = 1 if self.outbox else 0
        return [self.name, STATUS_NAMES[self.status], self.created.isoformat(), done, pending]


def _events(items: list[hpb.HistoryEvent]) -> str:
    blob = spb.GetInstanceHistoryResponse(events=items).SerializeToString()
    return base64.b64encode(blob).decode()


def _parse_events(data: str) -> list[hpb.HistoryEvent]:
    msg = spb.GetInstanceHistoryResponse()
    msg.ParseFromString(base64.b64decode(data))
    return list(msg.events)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def encode(rec: Record) -> bytes:
    return orjson.dumps(
        {
            "id": rec.instance_id,
            "name": rec.name,
            "status": rec.status,
            "created": rec.created.isoformat(),
            "updated": rec.updated.isoformat(),
            "executionId": rec.execution_id,
            "input": rec.input,
            "output": rec.output,
            "customStatus": rec.custom_status,
            "failure": base64.b64encode(rec.failure).decode(),
            "completed": _iso(rec.completed),
            "scheduledStart": _iso(rec.scheduled_start),
            "parent": rec.parent_id,
            "suspended": rec.suspended,
            "history": _events(rec.history),
            "inbox": _events(rec.inbox),
            "outbox": rec.outbox,
        }
    )


def decode(data: bytes) -> Record:
    raw = orjson.loads(data)
    return Record(
        instance_id=raw["id"],
        name=raw["name"],
        status=int(raw["status"]),
        created=datetime.fromisoformat(raw["created"]),
        updated=datetime.fromisoformat(raw["updated"]),
        execution_id=raw["executionId"],
        input=raw.get("input"),
        output=raw.get("output"),
        custom_status=raw.get("customStatus"),
        failure=base64.b64decode(raw.get("failure") or ""),
        completed=_dt(raw.get("completed")),
        scheduled_start=_dt(raw.get("scheduledStart")),
        parent_id=raw.get("parent") or "",
        suspended=bool(raw.get("suspended")),
        history=_parse_events(raw.get("history") or ""),
        inbox=_parse_events(raw.get("inbox") or ""),
        outbox=list(raw.get("outbox") or []),
    )
