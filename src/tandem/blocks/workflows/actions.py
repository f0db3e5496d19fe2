"""A turn's answer turned into history (pure): the events for the worker's actions, the
messages they send to other instances, and what a finished instance tells its parent."""

from __future__ import annotations

import uuid
from typing import Any

from dapr.ext.workflow._durabletask.internal import history_events_pb2 as hpb
from dapr.ext.workflow._durabletask.internal import orchestration_pb2 as opb
from dapr.ext.workflow._durabletask.internal import orchestrator_actions_pb2 as apb

from tandem.blocks.workflows.record import STATUS_NAMES, TERMINATED, Record, event, now

Message = dict[str, Any]  # for another instance, delivered after the commit


def translate(
    instance_id: str, action: apb.WorkflowAction, at: Any
) -> tuple[str, hpb.HistoryEvent | None, Message | None]:
    """One action other than completing: its kind, its history event, its message."""
    kind = str(action.WhichOneof("workflowActionType"))
    if kind == "scheduleTask":
        a = action.scheduleTask
        e = event(
            at,
            action.id,
            taskScheduled=hpb.TaskScheduledEvent(
                name=a.name,
                input=a.input if a.HasField("input") else None,
                taskExecutionId=a.taskExecutionId or uuid.uuid4().hex,
            ),
        )
        return kind, e, None
    if kind == "createTimer":
        t = action.createTimer
        created = hpb.TimerCreatedEvent(fireAt=t.fireAt)
        if t.HasField("name"):
            created.name = t.name
        origin = t.WhichOneof("origin")
        if origin is not None:
            getattr(created, origin).CopyFrom(getattr(t, origin))
        return kind, event(at, action.id, timerCreated=created), None
    if kind == "createChildWorkflow":
        c = action.createChildWorkflow
        child_id = c.instanceId or f"{instance_id}:{action.id:04x}"
        e = event(
            at,
            action.id,
            childWorkflowInstanceCreated=hpb.ChildWorkflowInstanceCreatedEvent(
                instanceId=child_id,
                name=c.name,
                input=c.input if c.HasField("input") else None,
            ),
        )
        message = {
            "kind": "start",
            "id": child_id,
            "name": c.name,
            "input": c.input.value if c.HasField("input") else None,
            "taskId": action.id,
        }
        return kind, e, message
    if kind == "sendEvent":
        s = action.sendEvent
        e = event(
            at,
            action.id,
            eventSent=hpb.EventSentEvent(
                instanceId=s.instance.instanceId,
                name=s.name,
                input=s.data if s.HasField("data") else None,
            ),
        )
        message = {
            "kind": "event",
            "id": s.instance.instanceId,
            "name": s.name,
            "input": s.data.value if s.HasField("data") else None,
        }
        return kind, e, message
    if kind == "terminateWorkflow":
        t2 = action.terminateWorkflow
        message = {
            "kind": "terminate",
            "id": t2.instanceId,
            "output": t2.reason.value if t2.HasField("reason") else None,
            "recursive": t2.recurse,
        }
        return kind, None, message
    return kind, None, None


def completed_event(action_id: int, done: Any, at: Any) -> hpb.HistoryEvent:
    """ExecutionCompleted for a ``CompleteWorkflowAction`` (not continue-as-new)."""
    return event(
        at,
        action_id,
        executionCompleted=hpb.ExecutionCompletedEvent(
            workflowStatus=done.workflowStatus,
            result=done.result if done.HasField("result") else None,
            failureDetails=done.failureDetails if done.HasField("failureDetails") else None,
        ),
    )


def parent_of(rec: Record) -> opb.ParentInstanceInfo | None:
    for e in rec.history:
        if e.HasField("executionStarted"):
            started = e.executionStarted
            return started.parentInstance if started.HasField("parentInstance") else None
    return None


def result_message(rec: Record, parent: opb.ParentInstanceInfo, done: Any) -> dict[str, Any]:
    at = now()
    task_id = parent.taskScheduledId
    if done.workflowStatus == opb.OrchestrationStatus.Value("ORCHESTRATION_STATUS_COMPLETED"):
        e = event(
            at,
            childWorkflowInstanceCompleted=hpb.ChildWorkflowInstanceCompletedEvent(
                taskScheduledId=task_id, result=done.result if done.HasField("result") else None
            ),
        )
    else:
        details = (
            done.failureDetails
            if done.HasField("failureDetails")
            else opb.TaskFailureDetails(
                errorType="WorkflowTerminated"
                if done.workflowStatus == TERMINATED
                else "WorkflowFailed",
                errorMessage=f"child workflow {rec.instance_id} ended {STATUS_NAMES.get(done.workflowStatus, str(done.workflowStatus))}",
            )
        )
        e = event(
            at,
            childWorkflowInstanceFailed=hpb.ChildWorkflowInstanceFailedEvent(
                taskScheduledId=task_id, failureDetails=details
            ),
        )
    return {
        "kind": "result",
        "id": parent.workflowInstance.instanceId,
        "executionId": parent.workflowInstance.executionId.value,
        "event": e.SerializeToString().hex(),
    }


def completed_task(e: hpb.HistoryEvent) -> int | None:
    kind = e.WhichOneof("eventType")
    if kind in (
        "taskCompleted",
        "taskFailed",
        "childWorkflowInstanceCompleted",
        "childWorkflowInstanceFailed",
    ):
        return int(getattr(e, kind).taskScheduledId)
    return None


def copy_event(e: hpb.HistoryEvent) -> hpb.HistoryEvent:
    out = hpb.HistoryEvent()
    out.CopyFrom(e)
    return out


def children(rec: Record) -> list[str]:
    return [
        e.childWorkflowInstanceCreated.instanceId
        for e in rec.history
        if e.HasField("childWorkflowInstanceCreated")
    ]


def running_children(history: list[hpb.HistoryEvent]) -> list[str]:
    finished = {completed_task(e) for e in history}
    return [
        e.childWorkflowInstanceCreated.instanceId
        for e in history
        if e.HasField("childWorkflowInstanceCreated") and e.eventId not in finished
    ]


def recursive_terminate(consumed: list[hpb.HistoryEvent]) -> bool:
    return any(
        e.HasField("executionTerminated") and e.executionTerminated.recurse for e in consumed
    )
