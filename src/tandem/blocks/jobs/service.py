"""Dapr's Jobs API semantics, shared by the HTTP and gRPC front doors.

Jobs live in the control plane's one scheduler (``tandem.placement.jobs``), keyed by this
app's id, so every replica of the app sees the same jobs and each due time is handed to
one of them. The job's ``data`` travels as a serialized ``google.protobuf.Any`` (the gRPC
API's type); the HTTP door converts JSON to and from it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.placement import wire

# Names become part of the scheduler's key (``job||<app>||<name>``) and of the app's
# route (``/job/<name>``): no separators, no path characters, nothing invisible.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    schedule: str = ""
    repeats: int = 0
    due_time: str = ""
    ttl: str = ""
    data: bytes = b""  # a serialized google.protobuf.Any
    # Dapr's JSON shape: {"drop": {}} or {"constant": {"interval": "5s", "maxRetries": 3}}.
    failure_policy: Mapping[str, Any] | None = None
    next_fire_time: str = field(default="", compare=False)


def error(code: str, message: str, **kw: Any) -> DaprError:
    return DaprError(code, message, info=ErrorInfo(reason=code, resource_type="job"), **kw)


def check_name(name: str) -> None:
    if not name:
        raise error("DAPR_SCHEDULER_JOB_NAME_EMPTY", "job name is empty")
    if not _NAME.match(name) or len(name) > 256:
        raise error(
            "DAPR_SCHEDULER_JOB_NAME",
            f"job name {name!r} is invalid: use letters, digits and . _ - : @ (up to 256)",
        )


def _job_from(view: Mapping[str, Any], data: str) -> Job:
    return Job(
        name=str(view.get("name", "")),
        schedule=str(view.get("schedule") or ""),
        repeats=int(view.get("repeats") or 0),
        due_time=str(view.get("dueTime") or ""),
        ttl=str(view.get("ttl") or ""),
        data=base64.b64decode(data),
        failure_policy=view.get("failurePolicy") or None,
        next_fire_time=str(view.get("nextFireTime") or ""),
    )


class JobsService:
    def __init__(self, app_id: str, channel: grpc.aio.Channel | None) -> None:
        self.app_id = app_id
        self._channel = channel

    async def _call(self, method: str, request: dict[str, Any], code: str) -> dict[str, Any]:
        if self._channel is None:
            raise error(code, "the jobs API needs the control plane (start it with `tandem run`)")
        try:
            answer: dict[str, Any] = await wire.unary(self._channel, wire.JOBS, method)(
                {"appId": self.app_id, **request}, timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            raise error(code, f"the scheduler is unreachable: {exc.details()}") from exc
        return answer

    async def schedule(self, job: Job, *, overwrite: bool) -> None:
        check_name(job.name)
        if not job.schedule.strip() and not job.due_time.strip():
            raise error(
                "DAPR_SCHEDULER_SCHEDULE_EMPTY", "a job needs a schedule, a dueTime, or both"
            )
        answer = await self._call(
            "Schedule",
            {
                "name": job.name,
                "schedule": job.schedule,
                "repeats": job.repeats,
                "dueTime": job.due_time,
                "ttl": job.ttl,
                "data": base64.b64encode(job.data).decode(),
                "failurePolicy": dict(job.failure_policy) if job.failure_policy else None,
                "overwrite": overwrite,
            },
            "DAPR_SCHEDULER_SCHEDULE_JOB",
        )
        if answer.get("error") == "invalid":
            raise error(
                "DAPR_SCHEDULER_SCHEDULE_JOB",
                f"invalid job {job.name}: {answer.get('message')}",
                http_status=400,
                grpc_status=grpc.StatusCode.INVALID_ARGUMENT,
            )
        if answer.get("error") == "exists":
            raise error(
                "DAPR_SCHEDULER_SCHEDULE_JOB",
                f"job {job.name} already exists (schedule it with overwrite to replace it)",
                http_status=409,
                grpc_status=grpc.StatusCode.ALREADY_EXISTS,
            )

    async def get(self, name: str) -> Job:
        check_name(name)
        answer = await self._call("Get", {"name": name}, "DAPR_SCHEDULER_GET_JOB")
        if "job" not in answer:
            raise error(
                "DAPR_SCHEDULER_GET_JOB",
                f"job {name} not found",
                http_status=404,
                grpc_status=grpc.StatusCode.NOT_FOUND,
            )
        return _job_from(answer["job"], answer.get("data", ""))

    async def delete(self, name: str) -> None:
        check_name(name)
        await self._call("Delete", {"name": name}, "DAPR_SCHEDULER_DELETE_JOB")

    async def list(self) -> list[Job]:
        answer = await self._call("List", {}, "DAPR_SCHEDULER_LIST_JOBS")
        return [_job_from(j, j.get("data", "")) for j in answer.get("jobs", [])]

    async def delete_prefix(self, prefix: str) -> int:
        answer = await self._call("DeletePrefix", {"prefix": prefix}, "DAPR_SCHEDULER_DELETE_JOB")
        return int(answer.get("deleted") or 0)
