"""The control plane's placement and reminder services, on its gRPC server.

- ``Placement/Connect``: one bidi stream per runtime. It drives the ``Coordinator`` (the
  two-phase table change under leases) and carries reminder firings to the actor's owner.
- ``Reminders/*``: unary calls the actors API uses to register, read, list and delete
  reminders in the one scheduler (``tandem.scheduler``).

The epoch is persisted in ``$TANDEM_HOME/placement.json`` and increased at every start;
if a previous control plane existed, nothing is committed for one lease (rule R3).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from tandem.placement import wire
from tandem.placement.coordinator import Commit, Coordinator, Prepare, Send
from tandem.placement.jobs import JOB_KIND, JobsApi
from tandem.placement.table import Version
from tandem.scheduler.engine import Scheduler
from tandem.scheduler.schedule import ScheduleError, reminder_schedule
from tandem.scheduler.store import Entry, FailurePolicy, Outcome, SchedulerStore, Trigger
from tandem.xds.ca import write_private_file
from tandem.xds.contract import WORKFLOW_TIMER_KIND

log = logging.getLogger("tandem.placement")

EPOCH_FILE = "placement.json"
SCHEDULER_FILE = "scheduler.db"
DEFAULT_LEASE = 5.0
REMINDER_KIND = "actor-reminder"


def next_epoch(home: Path) -> tuple[int, bool]:
    """Take the next epoch (durably) and say whether an earlier control plane existed."""
    path = home / EPOCH_FILE
    previous = 0
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        previous = int(json.loads(path.read_text())["epoch"])
    epoch = previous + 1
    # Durable before use: a restart must never reuse an epoch (owner-only, atomic).
    write_private_file(path, json.dumps({"epoch": epoch}).encode())
    return epoch, previous > 0


def reminder_key(actor_type: str, actor_id: str, name: str = "") -> str:
    return f"actor||{actor_type}||{actor_id}||{name}"


def _key(request: dict[str, Any], actor_type: str, actor_id: str, name: str) -> str:
    if request.get("kind") == WORKFLOW_TIMER_KIND:
        return f"workflow||{actor_type}||{actor_id}||{name}"
    return reminder_key(actor_type, actor_id, name)


class _Host:
    def __init__(self, host: str, app_id: str) -> None:
        self.host = host
        self.app_id = app_id
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.jobs = False  # takes job triggers for its app
        self.fires: set[int] = set()  # fires and job triggers sent here, not yet answered


class PlacementService:
    def __init__(self, home: Path, *, lease: float = DEFAULT_LEASE, margin: float = 1.0) -> None:
        self._home = home
        self._lease = lease
        self._margin = margin
        self._clock = time.monotonic
        self._coordinator: Coordinator | None = None
        self._streams: dict[str, _Host] = {}
        self._fires: dict[int, asyncio.Future[Outcome]] = {}
        self._fire_ids = itertools.count(1)
        self._store = SchedulerStore(str(home / SCHEDULER_FILE))
        self.scheduler = Scheduler(self._store, self._dispatch)
        self.jobs = JobsApi(self.scheduler, self._send_job)
        self._job_turns = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.epoch = 0

    @property
    def coordinator(self) -> Coordinator:
        assert self._coordinator is not None, "PlacementService.start() first"
        return self._coordinator

    async def start(self) -> None:
        self.epoch, restarted = await asyncio.to_thread(next_epoch, self._home)
        grace = self._clock() + self._lease + self._margin if restarted else 0.0
        self._coordinator = Coordinator(
            epoch=self.epoch, lease=self._lease, margin=self._margin, grace_until=grace
        )
        await self._store.open()
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self._ticker(), name="placement-ticker"),
        ]
        log.info("placement ready", extra={"epoch": self.epoch, "grace": bool(grace)})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._store.close()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        connect = grpc.stream_stream_rpc_method_handler(
            self._connect, request_deserializer=wire.decode, response_serializer=wire.encode
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(wire.SERVICE, {"Connect": connect}),)
        )
        reminders = {
            name: grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=wire.decode, response_serializer=wire.encode
            )
            for name, fn in (
                ("Register", self._register),
                ("Get", self._get),
                ("Delete", self._delete),
                ("List", self._list),
                ("DeleteAll", self._delete_all),
            )
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(wire.REMINDERS, reminders),)
        )
        self.jobs.add_to_server(server)

    # --- the stream ------------------------------------------------------------------------

    def _send(self, sends: list[Send], *, wake: bool = True) -> None:
        """Queue ``sends`` on their streams; a state change may move the ticker's deadline."""
        for host, message in sends:
            stream = self._streams.get(host)
            if stream is None:
                continue
            if isinstance(message, Prepare):
                stream.outbox.put_nowait(wire.table_message(message.table))
            elif isinstance(message, Commit):
                stream.outbox.put_nowait({"commit": str(message.version)})
        if wake:
            self._wake.set()

    async def _connect(
        self, requests: AsyncIterator[dict[str, Any]], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dict[str, Any]]:
        first = await anext(aiter(requests), None)
        hello = (first or {}).get("hello")
        if not isinstance(hello, dict) or not isinstance(hello.get("host"), str):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message is hello")
            return
        host = _Host(hello["host"], str(hello.get("app_id", "")))
        host.jobs = hello.get("jobs") is True
        types = frozenset(str(t) for t in hello.get("types") or [])
        if host.host in self._streams:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "this host is connected already")
            return
        for other in self._streams.values():
            shared = types & self.coordinator.hosted_types(other.host)
            if shared and other.app_id != host.app_id:
                # Dapr's model is one app id per actor type; the ring would mix two apps.
                log.warning(
                    "actor types hosted by two apps: calls will reach either",
                    extra={"types": sorted(shared), "apps": sorted({host.app_id, other.app_id})},
                )
        self._streams[host.host] = host
        host.outbox.put_nowait({"welcome": {"lease": self._lease, "epoch": self.epoch}})
        self._send(self.coordinator.connect(host.host, types, self._clock()))
        log.info("placement host joined", extra={"host": host.host, "types": sorted(types)})
        if host.jobs:
            self.scheduler.poke()  # its app's waiting jobs can go now
        reader = asyncio.create_task(self._read(host, requests))
        getter: asyncio.Task[dict[str, Any]] | None = None
        try:
            while not reader.done():
                if getter is None:
                    getter = asyncio.create_task(host.outbox.get())
                await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    message, getter = getter.result(), None
                    yield message
        finally:
            for task in (reader, getter):
                if task is not None:
                    task.cancel()
            # The host leaves before anything here awaits: a second cancellation of this
            # handler (the RPC ending as it is torn down) must not leave a dead host in the
            # table, holding every change for good.
            # What was sent and not answered will not be: try it again at once rather than
            # at the delivery timeout (a firing may run twice: delivery is at least once).
            for fire_id in list(host.fires):
                future = self._fires.get(fire_id)
                if future is not None and not future.done():
                    future.set_result(Outcome.UNROUTABLE)
            if self._streams.get(host.host) is host:
                del self._streams[host.host]
                self._send(self.coordinator.disconnect(host.host, self._clock()))
            log.info("placement host left", extra={"host": host.host})
            await asyncio.gather(*(t for t in (reader, getter) if t), return_exceptions=True)

    async def _read(self, host: _Host, requests: AsyncIterator[dict[str, Any]]) -> None:
        async for message in requests:
            now = self._clock()
            if "prepared" in message:
                version = Version.parse(str(message["prepared"]))
                self._send(self.coordinator.prepared(host.host, version, now))
            elif "types" in message:
                types = frozenset(str(t) for t in message["types"] or [])
                self._send(self.coordinator.connect(host.host, types, now, rejoin=True))
                log.info(
                    "placement host retyped", extra={"host": host.host, "types": sorted(types)}
                )
            elif "renew" in message:
                if self.coordinator.renew(host.host, now):
                    host.outbox.put_nowait({"granted": message["renew"]})
            elif "fired" in message:
                fired = message["fired"]
                future = self._fires.pop(int(fired.get("id", 0)), None)
                if future is not None and not future.done():
                    future.set_result(Outcome(fired.get("outcome", "failed")))

    async def _ticker(self) -> None:
        """Wake when a lease or the restart grace may run out, so a waiting change commits."""
        while True:
            self._wake.clear()
            now = self._clock()
            self._send(self.coordinator.tick(now), wake=False)
            deadline = self.coordinator.next_deadline(now)
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that races with the event being set, and this loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait + 0.001):
                    await self._wake.wait()

    # --- reminders -------------------------------------------------------------------------

    async def _dispatch(self, trigger: Trigger) -> Outcome:
        if trigger.entry.kind == JOB_KIND:
            return await self.jobs.dispatch(trigger)
        spec = trigger.entry.spec
        actor_type, actor_id = spec["actorType"], spec["actorId"]
        owner = self.coordinator.committed.owner(actor_type, actor_id)
        stream = self._streams.get(owner) if owner is not None else None
        if stream is None:
            return Outcome.UNROUTABLE
        fire_id, future = self._await_answer(stream)
        stream.outbox.put_nowait(
            {
                "fire": {
                    "id": fire_id,
                    "type": actor_type,
                    "actor": actor_id,
                    "name": spec["name"],
                    "payload": base64.b64encode(trigger.entry.data).decode(),
                    "due": trigger.due.isoformat(),
                    "fired": trigger.fired,
                }
            }
        )
        return await self._answer(stream, fire_id, future)

    def _await_answer(self, stream: _Host) -> tuple[int, asyncio.Future[Outcome]]:
        fire_id = next(self._fire_ids)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._fires[fire_id] = future
        stream.fires.add(fire_id)
        return fire_id, future

    async def _answer(
        self, stream: _Host, fire_id: int, future: asyncio.Future[Outcome]
    ) -> Outcome:
        try:
            return await future
        finally:
            self._fires.pop(fire_id, None)
            stream.fires.discard(fire_id)

    async def _send_job(self, app_id: str, job: dict[str, Any]) -> Outcome:
        """One trigger to one runtime of ``app_id`` (taking turns), answered on its stream."""
        takers = [h for h in self._streams.values() if h.jobs and h.app_id == app_id]
        if not takers:
            return Outcome.UNROUTABLE
        stream = takers[next(self._job_turns) % len(takers)]
        fire_id, future = self._await_answer(stream)
        stream.outbox.put_nowait({"job": {"id": fire_id, **job}})
        return await self._answer(stream, fire_id, future)

    async def _register(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            actor_type, actor_id, name = _names(request)
            schedule = reminder_schedule(
                due_time=str(request.get("dueTime") or ""),
                period=str(request.get("period") or ""),
                ttl=str(request.get("ttl") or ""),
                now=datetime.now(UTC),
            )
        except (ScheduleError, ValueError) as exc:
            return {"error": "invalid", "message": str(exc)}
        data = request.get("data")
        spec = {
            "actorType": actor_type,
            "actorId": actor_id,
            "name": name,
            "dueTime": request.get("dueTime") or "",
            "period": request.get("period") or "",
            "ttl": request.get("ttl") or "",
        }
        payload = json.dumps(
            {"dueTime": spec["dueTime"], "period": spec["period"], "data": data}
        ).encode()
        timer = request.get("kind") == WORKFLOW_TIMER_KIND
        entry = Entry(
            key=_key(request, actor_type, actor_id, name),
            kind=WORKFLOW_TIMER_KIND if timer else REMINDER_KIND,
            target=actor_type,
            schedule=schedule,
            data=payload,
            spec={**spec, "data": data},
            # A dropped workflow timer would leave its instance waiting forever: retry it
            # until it lands (a reminder keeps Dapr's 3 retries).
            failure=FailurePolicy(max_retries=None) if timer else FailurePolicy(),
        )
        overwrite = request.get("overwrite", True) is not False
        if not await self.scheduler.put(entry, overwrite=overwrite):
            return {"error": "exists", "message": f"reminder {name} already exists"}
        return {}

    async def _get(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        actor_type, actor_id, name = _names(request)
        stored = await self.scheduler.get(reminder_key(actor_type, actor_id, name))
        return {} if stored is None else {"reminder": _view(stored.entry.spec)}

    async def _delete(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        actor_type, actor_id, name = _names(request)
        return {"deleted": await self.scheduler.delete(_key(request, actor_type, actor_id, name))}

    async def _list(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        items = await self.scheduler.entries(_prefix(request))
        return {"reminders": [_view(s.entry.spec) for s in items]}

    async def _delete_all(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        if not request.get("actorType"):
            return {"error": "invalid", "message": "actorType is required"}
        return {"deleted": await self.scheduler.delete_prefix(_prefix(request))}


def _prefix(request: dict[str, Any]) -> str:
    """The reminder keys of one actor type, or one actor, or (neither given) all."""
    actor_type = str(request.get("actorType") or "")
    actor_id = str(request.get("actorId") or "")
    if actor_id:
        return reminder_key(actor_type, actor_id)
    return f"actor||{actor_type}||" if actor_type else "actor||"


def _names(request: dict[str, Any]) -> tuple[str, str, str]:
    values = tuple(str(request.get(k) or "") for k in ("actorType", "actorId", "name"))
    if not all(values):
        raise ValueError("actorType, actorId and name are required")
    return values  # type: ignore[return-value]


def _view(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "actorType": spec["actorType"],
        "actorID": spec["actorId"],
        "name": spec["name"],
        "dueTime": spec["dueTime"],
        "period": spec["period"],
        "ttl": spec.get("ttl", ""),
        "data": spec.get("data"),
    }
