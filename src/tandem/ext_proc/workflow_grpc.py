"""``TaskHubSidecarService``: the durable-task API the SDK's workflow worker and client call,
served on the sidecar's gRPC port (through Envoy, whose route there has no timeout: the
work-item stream lives as long as the app)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any

import grpc
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb
from google.protobuf import empty_pb2

from tandem.blocks.errors import DaprError
from tandem.blocks.workflows.ids import check_instance_id, new_instance_id
from tandem.blocks.workflows.listing import Filter, page, purge_filter
from tandem.blocks.workflows.ownership import Workflows
from tandem.blocks.workflows.record import STATUS_NAMES, TERMINAL, Record
from tandem.ext_proc.grpc_api import guarded

log = logging.getLogger("tandem.workflows")
TERMINAL_NAMES = frozenset(STATUS_NAMES[s] for s in TERMINAL)


def no_engine() -> DaprError:
    return DaprError(
        "ERR_WORKFLOW_COMPONENT_NOT_FOUND",
        'workflows need an actor state store: mark one state store actorStateStore: "true"',
        grpc_status=grpc.StatusCode.FAILED_PRECONDITION,
    )


class TaskHubServicer:
    def __init__(self, engine: Callable[[], Workflows | None]) -> None:
        self._engine = engine

    def _get(self) -> Workflows:
        engine = self._engine()
        if engine is None:
            raise no_engine()
        return engine

    async def _run(
        self, context: grpc.aio.ServicerContext, work: Callable[[Workflows], Awaitable[Any]]
    ) -> Any:
        async def call() -> Any:
            return await work(self._get())

        return await guarded(context, call())

    async def Hello(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return empty_pb2.Empty()

    async def StartInstance(self, request: spb.CreateInstanceRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.CreateInstanceResponse:
            instance_id = request.instanceId or new_instance_id()
            check_instance_id(instance_id)
            if not request.name:
                raise DaprError(
                    "ERR_WORKFLOW_NAME_MISSING",
                    "workflow name is not configured",
                    http_status=400,
                    grpc_status=grpc.StatusCode.INVALID_ARGUMENT,
                )
            scheduled = (
                request.scheduledStartTimestamp.ToDatetime(tzinfo=UTC)
                if request.HasField("scheduledStartTimestamp")
                else None
            )
            async with engine.measure("create_workflow"):
                await engine.start(
                    instance_id,
                    request.name,
                    request.input.value if request.HasField("input") else None,
                    scheduled_start=scheduled,
                    execution_id=request.executionId.value
                    if request.HasField("executionId")
                    else None,
                )
            return spb.CreateInstanceResponse(instanceId=instance_id)

        return await self._run(context, work)

    async def GetInstance(self, request: spb.GetInstanceRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.GetInstanceResponse:
            async with engine.measure("get_workflow"):
                rec = await engine.state(request.instanceId)
            return _answer(rec, request.getInputsAndOutputs)

        return await self._run(context, work)

    async def WaitForInstanceStart(self, request: spb.GetInstanceRequest, context: Any) -> Any:  # noqa: N802
        return await self._wait(request, context, "started")

    async def WaitForInstanceCompletion(self, request: spb.GetInstanceRequest, context: Any) -> Any:  # noqa: N802
        return await self._wait(request, context, "completed")

    async def _wait(self, request: spb.GetInstanceRequest, context: Any, until: str) -> Any:
        async def work(engine: Workflows) -> spb.GetInstanceResponse:
            remaining = context.time_remaining()
            try:
                rec = await engine.wait(request.instanceId, until, remaining)
            except TimeoutError:
                raise DaprError(
                    "ERR_GET_WORKFLOW",
                    f"timed out waiting for workflow {request.instanceId}",
                    grpc_status=grpc.StatusCode.DEADLINE_EXCEEDED,
                ) from None
            return _answer(rec, request.getInputsAndOutputs)

        return await self._run(context, work)

    async def RaiseEvent(self, request: spb.RaiseEventRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.RaiseEventResponse:
            async with engine.measure("add_event"):
                await engine.raise_event(
                    request.instanceId,
                    request.name,
                    request.input.value if request.HasField("input") else None,
                )
            return spb.RaiseEventResponse()

        return await self._run(context, work)

    async def TerminateInstance(self, request: spb.TerminateRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.TerminateResponse:
            await engine.terminate(
                request.instanceId,
                request.output.value if request.HasField("output") else None,
                request.recursive,
            )
            return spb.TerminateResponse()

        return await self._run(context, work)

    async def SuspendInstance(self, request: spb.SuspendRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.SuspendResponse:
            await engine.suspend(
                request.instanceId, request.reason.value if request.HasField("reason") else None
            )
            return spb.SuspendResponse()

        return await self._run(context, work)

    async def ResumeInstance(self, request: spb.ResumeRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.ResumeResponse:
            await engine.resume(
                request.instanceId, request.reason.value if request.HasField("reason") else None
            )
            return spb.ResumeResponse()

        return await self._run(context, work)

    async def PurgeInstances(self, request: spb.PurgeInstancesRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.PurgeInstancesResponse:
            force = request.force if request.HasField("force") else False
            if request.WhichOneof("request") == "purgeInstanceFilter":
                # A filter selects finished instances only (all of them with force).
                index = await engine.listing()
                ids = [
                    i
                    for i in purge_filter(index, request.purgeInstanceFilter)
                    if force or index[i][1] in TERMINAL_NAMES
                ]
            else:
                ids = [request.instanceId]
            count = 0
            async with engine.measure("purge_workflow"):
                for instance_id in ids:
                    count += await engine.purge(instance_id, request.recursive, force)
            answer = spb.PurgeInstancesResponse(deletedInstanceCount=count)
            answer.isComplete.value = True
            return answer

        return await self._run(context, work)

    async def GetWorkItems(  # noqa: N802
        self, request: spb.GetWorkItemsRequest, context: Any
    ) -> AsyncIterator[spb.WorkItem]:
        engine = self._engine()
        if engine is None:
            log.warning("an app started a workflow worker, but %s", no_engine().message)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, no_engine().message)
            return
        log.info("workflow worker connected")
        async for item in engine.work_items():
            yield item

    async def CompleteActivityTask(self, request: spb.ActivityResponse, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.CompleteTaskResponse:
            await engine.complete_activity(request)
            return spb.CompleteTaskResponse()

        return await self._run(context, work)

    async def CompleteOrchestratorTask(self, request: spb.WorkflowResponse, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.CompleteTaskResponse:
            await engine.complete_turn(request)
            return spb.CompleteTaskResponse()

        return await self._run(context, work)

    CompleteWorkflowTask = CompleteOrchestratorTask

    async def ListInstanceIDs(self, request: spb.ListInstanceIDsRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.ListInstanceIDsResponse:
            size = request.pageSize if request.HasField("pageSize") else 0
            token = request.continuationToken if request.HasField("continuationToken") else ""
            ids, next_token = page(await engine.listing(), Filter(), size, token)
            answer = spb.ListInstanceIDsResponse(instanceIds=ids)
            if next_token:
                answer.continuationToken = next_token
            return answer

        return await self._run(context, work)

    async def GetInstanceHistory(self, request: spb.GetInstanceHistoryRequest, context: Any) -> Any:  # noqa: N802
        async def work(engine: Workflows) -> spb.GetInstanceHistoryResponse:
            return spb.GetInstanceHistoryResponse(events=await engine.history(request.instanceId))

        return await self._run(context, work)

    async def RerunWorkflowFromEvent(  # noqa: N802
        self, request: spb.RerunWorkflowFromEventRequest, context: Any
    ) -> Any:
        async def work(engine: Workflows) -> spb.RerunWorkflowFromEventResponse:
            new_id = request.newInstanceID if request.HasField("newInstanceID") else ""
            new_id = new_id or new_instance_id()
            check_instance_id(new_id)
            created = await engine.rerun(
                request.sourceInstanceID,
                request.eventID,
                new_id,
                request.input.value
                if request.overwriteInput and request.HasField("input")
                else None,
                overwrite_input=request.overwriteInput,
            )
            return spb.RerunWorkflowFromEventResponse(newInstanceID=created)

        return await self._run(context, work)


def _answer(rec: Record | None, payloads: bool) -> spb.GetInstanceResponse:
    if rec is None:
        return spb.GetInstanceResponse(exists=False)
    return spb.GetInstanceResponse(exists=True, workflowState=rec.state(payloads))


def add_to_server(
    server: grpc.aio.Server, engine: Callable[[], Workflows | None]
) -> TaskHubServicer:
    """Serve the task hub on ``server``; the servicer is returned for the HTTP door, which
    serves its unary calls when Envoy bridges them (grpc_over_http.py)."""
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

    servicer = TaskHubServicer(engine)
    pb_grpc.add_TaskHubSidecarServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    return servicer
