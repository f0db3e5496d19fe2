"""The Jobs RPCs (``ScheduleJob``, ``GetJob``, ``DeleteJob``, ``ListJobs``,
``DeleteJobsByPrefix`` and their ``Alpha1`` twins): proto in, :class:`JobsService`, proto out."""

from __future__ import annotations

from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import jobs_pb2
from google.protobuf import duration_pb2

from tandem.blocks.jobs.service import Job, JobsService
from tandem.ext_proc.grpc_api import Rpc
from tandem.resources.durations import parse_duration


def policy_from_proto(job: jobs_pb2.Job) -> dict[str, Any] | None:
    if not job.HasField("failure_policy"):
        return None
    policy = job.failure_policy
    if policy.HasField("drop"):
        return {"drop": {}}
    constant: dict[str, Any] = {}
    if policy.constant.HasField("interval"):
        constant["interval"] = f"{policy.constant.interval.ToTimedelta().total_seconds()}s"
    if policy.constant.HasField("max_retries"):
        constant["maxRetries"] = policy.constant.max_retries
    return {"constant": constant}


def policy_to_proto(policy: Any) -> common_pb2.JobFailurePolicy | None:
    if not policy:
        return None
    if "drop" in policy:
        return common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
    constant = policy.get("constant") or {}
    out = common_pb2.JobFailurePolicyConstant()
    if constant.get("interval"):
        interval = duration_pb2.Duration()
        interval.FromTimedelta(parse_duration(str(constant["interval"])))
        out.interval.CopyFrom(interval)
    if constant.get("maxRetries") is not None:
        out.max_retries = int(constant["maxRetries"])
    return common_pb2.JobFailurePolicy(constant=out)


def job_from_proto(job: jobs_pb2.Job) -> Job:
    return Job(
        name=job.name,
        schedule=job.schedule,
        repeats=job.repeats,
        due_time=job.due_time,
        ttl=job.ttl,
        data=job.data.SerializeToString(),
        failure_policy=policy_from_proto(job),
    )


def job_to_proto(job: Job) -> jobs_pb2.Job:
    out = jobs_pb2.Job(name=job.name)
    if job.schedule:
        out.schedule = job.schedule
    if job.repeats:
        out.repeats = job.repeats
    if job.due_time:
        out.due_time = job.due_time
    if job.ttl:
        out.ttl = job.ttl
    if job.data:
        out.data.ParseFromString(job.data)
    policy = policy_to_proto(job.failure_policy)
    if policy is not None:
        out.failure_policy.CopyFrom(policy)
    return out


def rpcs(service: JobsService) -> dict[str, Rpc]:
    async def schedule(request: Any) -> Any:
        await service.schedule(job_from_proto(request.job), overwrite=request.overwrite)
        return jobs_pb2.ScheduleJobResponse()

    async def get(request: Any) -> Any:
        return jobs_pb2.GetJobResponse(job=job_to_proto(await service.get(request.name)))

    async def delete(request: Any) -> Any:
        await service.delete(request.name)
        return jobs_pb2.DeleteJobResponse()

    async def list_jobs(request: Any) -> Any:
        return jobs_pb2.ListJobsResponse(jobs=[job_to_proto(j) for j in await service.list()])

    async def list_alpha(request: Any) -> Any:
        return jobs_pb2.ListJobsResponseAlpha1(jobs=[job_to_proto(j) for j in await service.list()])

    async def delete_prefix(request: Any) -> Any:
        await service.delete_prefix(request.name_prefix)
        return jobs_pb2.DeleteJobsByPrefixResponse()

    async def delete_prefix_alpha(request: Any) -> Any:
        await service.delete_prefix(request.name_prefix)
        return jobs_pb2.DeleteJobsByPrefixResponseAlpha1()

    return {
        "ScheduleJob": schedule,
        "ScheduleJobAlpha1": schedule,
        "GetJob": get,
        "GetJobAlpha1": get,
        "DeleteJob": delete,
        "DeleteJobAlpha1": delete,
        "ListJobs": list_jobs,
        "ListJobsAlpha1": list_alpha,
        "DeleteJobsByPrefix": delete_prefix,
        "DeleteJobsByPrefixAlpha1": delete_prefix_alpha,
    }
