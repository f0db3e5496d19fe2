"""The control plane's Jobs API: one app's jobs as rows of the one scheduler.

Unary JSON calls (``tandem.scheduler.v1.Jobs``) from the runtimes: ``Schedule``, ``Get``,
``Delete``, ``List``, ``DeletePrefix``, keyed by app id and job name. A due job is handed
to exactly one connected runtime of its app (round robin over the replicas whose stream
said they take jobs); with none connected the trigger waits (``UNROUTABLE``).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from tandem.placement import wire
from tandem.resources.durations import parse_duration
from tandem.scheduler.engine import Scheduler
from tandem.scheduler.schedule import ScheduleError, job_schedule
from tandem.scheduler.store import Entry, FailurePolicy, Outcome, Stored, Trigger

JOB_KIND = "job"
# (app id, message) -> the outcome from one runtime of that app.
SendJob = Callable[[str, dict[str, Any]], Awaitable[Outcome]]


def job_key(app_id: str, name: str = "") -> str:
    return f"job||{app_id}||{name}"


def failure_policy(spec: dict[str, Any] | None) -> FailurePolicy:
    """Dapr's ``failurePolicy``: ``{"drop": {}}`` or ``{"constant": {"interval", "maxRetries"}}``
    (no maxRetries: retry forever); absent, Dapr's default (3 retries, 1 s apart)."""
    if not spec:
        return FailurePolicy()
    if "drop" in spec:
        return FailurePolicy(max_retries=0)
    constant = spec.get("constant")
    if not isinstance(constant, dict):
        raise ScheduleError("failurePolicy", "expected drop or constant")
    interval = timedelta(seconds=1)
    if constant.get("interval"):
        try:
            interval = parse_duration(str(constant["interval"]))
        except ValueError as exc:
            raise ScheduleError("failurePolicy.constant.interval", str(exc)) from None
    retries = constant.get("maxRetries")
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise ScheduleError("failurePolicy.constant.maxRetries", "must be a non-negative integer")
    return FailurePolicy(interval=interval, max_retries=retries)


def view(stored: Stored) -> dict[str, Any]:
    return {
        **stored.entry.spec,
        "appId": stored.entry.target,
        "nextFireTime": stored.due.isoformat(),
    }


class JobsApi:
    def __init__(self, scheduler: Scheduler, send: SendJob) -> None:
        self._scheduler = scheduler
        self._send = send

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=wire.decode, response_serializer=wire.encode
            )
            for name, fn in (
                ("Schedule", self._schedule),
                ("Get", self._get),
                ("Delete", self._delete),
                ("List", self._list),
                ("DeletePrefix", self._delete_prefix),
            )
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(wire.JOBS, handlers),)
        )

    async def dispatch(self, trigger: Trigger) -> Outcome:
        spec = trigger.entry.spec
        return await self._send(
            trigger.entry.target,
            {
                "name": spec["name"],
                "data": base64.b64encode(trigger.entry.data).decode(),
                "due": trigger.due.isoformat(),
                "fired": trigger.fired,
            },
        )

    async def _schedule(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        app_id, name = str(request.get("appId") or ""), str(request.get("name") or "")
        if not app_id or not name:
            return {"error": "invalid", "message": "appId and name are required"}
        schedule_text = str(request.get("schedule") or "")
        repeats = int(request.get("repeats") or 0)
        due_time = str(request.get("dueTime") or "")
        ttl = str(request.get("ttl") or "")
        policy = request.get("failurePolicy") or None
        try:
            schedule = job_schedule(
                schedule=schedule_text,
                repeats=repeats,
                due_time=due_time,
                ttl=ttl,
                now=datetime.now(UTC),
            )
            failure = failure_policy(policy)
        except ScheduleError as exc:
            return {"error": "invalid", "message": str(exc)}
        spec: dict[str, Any] = {
            "name": name,
            "schedule": schedule_text,
            "repeats": repeats,
            "dueTime": due_time,
            "ttl": ttl,
            "failurePolicy": policy,
        }
        entry = Entry(
            key=job_key(app_id, name),
            kind=JOB_KIND,
            target=app_id,
            schedule=schedule,
            data=base64.b64decode(str(request.get("data") or "")),
            spec={k: v for k, v in spec.items() if v},
            failure=failure,
        )
        if not await self._scheduler.put(entry, overwrite=request.get("overwrite") is not False):
            return {"error": "exists", "message": f"job {name} already exists"}
        return {}

    async def _get(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        stored = await self._scheduler.get(job_key(str(request["appId"]), str(request["name"])))
        if stored is None:
            return {}
        return {"job": view(stored), "data": base64.b64encode(stored.entry.data).decode()}

    async def _delete(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        key = job_key(str(request["appId"]), str(request["name"]))
        return {"deleted": await self._scheduler.delete(key)}

    async def _list(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        app_id = str(request.get("appId") or "")
        items = await self._scheduler.entries(job_key(app_id) if app_id else "job||")
        return {
            "jobs": [{**view(s), "data": base64.b64encode(s.entry.data).decode()} for s in items]
        }

    async def _delete_prefix(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        prefix = job_key(str(request["appId"]), str(request.get("prefix") or ""))
        return {"deleted": await self._scheduler.delete_prefix(prefix)}
