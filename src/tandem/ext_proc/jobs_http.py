"""The Jobs API over HTTP: ``/v1.0-alpha1/jobs/{name}`` (and ``/v1.0/jobs/{name}``):
schedule (POST), get, delete; ``GET /v1.0-alpha1/jobs`` lists them with their next fire
time (Tandem's, not Dapr's)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from tandem.blocks.errors import DaprError
from tandem.blocks.jobs.data import any_from_json, json_from_any
from tandem.blocks.jobs.service import Job, JobsService, error
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

PREFIXES = ("/v1.0-alpha1/jobs", "/v1.0/jobs")


def register(router: Router, service: JobsService) -> None:
    api = _JobsHttp(service)
    for prefix in PREFIXES:
        router.add(("POST", "PUT"), prefix + "/{name}", api.schedule)
        router.add("GET", prefix + "/{name}", api.get)
        router.add("DELETE", prefix + "/{name}", api.delete)
        router.add("GET", prefix, api.list)


def view(job: Job) -> dict[str, Any]:
    """A job as Dapr's GET answers it (fields left unset are left out)."""
    out: dict[str, Any] = {"name": job.name}
    if job.schedule:
        out["schedule"] = job.schedule
    if job.repeats:
        out["repeats"] = job.repeats
    if job.due_time:
        out["dueTime"] = job.due_time
    if job.ttl:
        out["ttl"] = job.ttl
    data = json_from_any(job.data) if job.data else None
    if data is not None:
        out["data"] = data
    if job.failure_policy:
        out["failurePolicy"] = dict(job.failure_policy)
    return out


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DaprError("ERR_MALFORMED_REQUEST", f'"{key}" must be a string')
    return value


def parse_job(name: str, body: object) -> tuple[Job, bool]:
    if not isinstance(body, dict):
        raise DaprError(
            "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body: expected a JSON object"
        )
    if not body:
        raise error("DAPR_SCHEDULER_EMPTY", "the job is empty")
    if "name" in body:
        raise error("DAPR_SCHEDULER_JOB_NAME", "the job name goes in the URL, not in the body")
    repeats = body.get("repeats", 0)
    if repeats is None:
        repeats = 0
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise DaprError("ERR_MALFORMED_REQUEST", '"repeats" must be a non-negative integer')
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise DaprError("ERR_MALFORMED_REQUEST", '"overwrite" must be a boolean')
    policy = body.get("failurePolicy")
    if policy is not None and not isinstance(policy, dict):
        raise DaprError("ERR_MALFORMED_REQUEST", '"failurePolicy" must be an object')
    try:
        data = any_from_json(body.get("data"))
    except json_format.ParseError as exc:
        raise DaprError("ERR_MALFORMED_REQUEST", f'"data": {exc}') from None
    job = Job(
        name=name,
        schedule=_string(body, "schedule"),
        repeats=repeats,
        due_time=_string(body, "dueTime"),
        ttl=_string(body, "ttl"),
        data=data,
        failure_policy=policy or None,
    )
    return job, overwrite


class _JobsHttp:
    def __init__(self, service: JobsService) -> None:
        self._service = service

    async def schedule(self, req: ApiRequest) -> ApiResponse:
        job, overwrite = parse_job(req.params["name"], req.json() if req.body.strip() else {})
        await self._service.schedule(job, overwrite=overwrite)
        return ApiResponse.empty(204)

    async def get(self, req: ApiRequest) -> ApiResponse:
        return ApiResponse.json(view(await self._service.get(req.params["name"])))

    async def delete(self, req: ApiRequest) -> ApiResponse:
        await self._service.delete(req.params["name"])
        return ApiResponse.empty(204)

    async def list(self, req: ApiRequest) -> ApiResponse:
        jobs = await self._service.list()
        return ApiResponse.json(
            {"jobs": [{**view(j), "nextFireTime": j.next_fire_time} for j in jobs]}
        )
