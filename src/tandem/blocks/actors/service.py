"""The actors building block, transport-neutral: what the HTTP and gRPC APIs call.

A call goes to the actor's owner in the committed placement table: this host's engine,
or another host through Envoy (``Forwarder``). A call refused because the actor is not
placed here right now (a table change in flight) is retried until ``call_deadline``,
after the caller's table has had a chance to move on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tandem.blocks.actors.engine import ActorEngine, NotOwner, TimerSpec
from tandem.blocks.actors.resiliency import ActorPolicies
from tandem.blocks.actors.state import ActorState, ActorStateOp
from tandem.blocks.app_channel import AppChannelError, AppResponse
from tandem.blocks.errors import DaprError
from tandem.blocks.resiliency import CircuitOpenError
from tandem.placement.table import Version

log = logging.getLogger("tandem.actors")

RESERVED_PREFIX = "dapr.internal."
CANCEL_HEADER = "x-daprremindercancel"


class Placement(Protocol):
    """The runtime's view of placement (``tandem.placement.client.PlacementClient``)."""

    committed: asyncio.Event

    def serves(self, actor_type: str, actor_id: str) -> bool: ...

    def route(self, actor_type: str, actor_id: str) -> str | None: ...

    @property
    def version(self) -> Version | None: ...


class Forwarder(Protocol):
    async def forward(
        self,
        host: str,
        version: Version,
        actor_type: str,
        actor_id: str,
        method: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> AppResponse | None:
        """The owner's answer, or None when the owner refused: not placed there now."""
        ...


# Serves a call to one of the runtime's own internal actor types (workflow instances):
# (actor id, method, body) -> answer. Raises NotOwner when this host may not serve it now.
InternalHandler = Callable[[str, str, bytes], Awaitable[AppResponse]]


class Reminders(Protocol):
    """The control plane's reminder API (``tandem.placement.service``)."""

    async def call(self, method: str, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ActorSettings:
    host: str  # this sidecar's placement host id
    call_deadline: float = 10.0  # how long a call may wait for placement to settle


class ActorService:
    def __init__(
        self,
        settings: ActorSettings,
        *,
        state: ActorState | None,
        placement: Placement | None,
        forwarder: Forwarder | None,
        reminders: Reminders | None,
        policies: ActorPolicies | None = None,
    ) -> None:
        self._settings = settings
        self._policies = policies  # Resiliency targets.actors, around the caller's calls
        self._state = state
        self._placement = placement
        self._forwarder = forwarder
        self._reminders = reminders
        self.engine: ActorEngine | None = None  # set once the app told its actor types
        self.engine_ready = asyncio.Event()
        self._internal: dict[str, InternalHandler] = {}

    def attach(self, engine: ActorEngine) -> None:
        self.engine = engine
        self.engine_ready.set()

    def detach(self) -> None:
        """The app stopped hosting actors (its gRPC actor stream ended)."""
        self.engine = None
        self.engine_ready.clear()

    def set_placement(self, placement: Placement) -> None:
        self._placement = placement

    @property
    def placement(self) -> Placement | None:
        return self._placement

    @property
    def host(self) -> str:
        return self._settings.host

    def serve_internal(self, actor_type: str, handler: InternalHandler) -> None:
        """Calls to ``actor_type`` (one of the runtime's own) go to ``handler`` at its owner."""
        self._internal[actor_type] = handler

    async def invoke_internal(
        self, actor_type: str, actor_id: str, method: str, body: bytes
    ) -> AppResponse:
        """A call to an internal actor at its owner (here or through the forwarding path),
        retried while placement settles, as any actor call."""
        return await self._invoke(actor_type, actor_id, method, body, {})

    @property
    def state(self) -> ActorState | None:
        return self._state

    def serves(self, actor_type: str, actor_id: str) -> bool:
        """The engine's fence question, answered by the placement stream (none: never)."""
        return self._placement is not None and self._placement.serves(actor_type, actor_id)

    # --- invocation ------------------------------------------------------------------------

    async def invoke(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: Mapping[str, str]
    ) -> AppResponse:
        self._check_names(actor_type, actor_id)
        self._need_placement()
        if self._policies is None:
            return await self._invoke(actor_type, actor_id, method, body, headers)
        try:
            return await self._policies.call(
                actor_type,
                actor_id,
                lambda: self._invoke(actor_type, actor_id, method, body, headers),
                _call_failed,
            )
        except CircuitOpenError as exc:
            raise DaprError("ERR_ACTOR_INVOKE_METHOD", f"error invoke actor method: {exc}") from exc
        except TimeoutError as exc:
            raise DaprError(
                "ERR_ACTOR_INVOKE_METHOD",
                f"error invoke actor method: {actor_type}/{actor_id}.{method} timed out "
                "(Resiliency timeout)",
            ) from exc

    async def _invoke(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: Mapping[str, str]
    ) -> AppResponse:
        placement = self._need_placement()
        deadline = time.monotonic() + self._settings.call_deadline
        delay = 0.02
        while True:
            owner = placement.route(actor_type, actor_id) if placement.committed.is_set() else None
            version = placement.version
            if owner is not None and version is not None:
                if owner == self._settings.host:
                    try:
                        return await self._local(actor_type, actor_id, method, body, headers)
                    except NotOwner:
                        pass
                else:
                    answer = await self._remote(
                        owner, version, actor_type, actor_id, method, body, headers
                    )
                    if answer is not None:
                        return answer
            if time.monotonic() >= deadline:
                if not placement.committed.is_set():
                    raise DaprError(
                        "ERR_ACTOR_NO_PLACEMENT", "placement table is not available yet"
                    )
                raise DaprError(
                    "ERR_ACTOR_NO_ADDRESS",
                    f"did not find address for actor {actor_type}/{actor_id}",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def invoke_forwarded(
        self,
        version: Version | None,
        actor_type: str,
        actor_id: str,
        method: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> AppResponse:
        """A call another host routed here. Raises NotOwner when this host does not serve
        the actor under the caller's table version (the caller refreshes and retries)."""
        placement = self._need_placement()
        if version is None or placement.version != version:
            raise NotOwner(f"caller's table {version} is not this host's {placement.version}")
        return await self._local(actor_type, actor_id, method, body, headers)

    async def _local(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: Mapping[str, str]
    ) -> AppResponse:
        internal = self._internal.get(actor_type)
        if internal is not None:
            return await internal(actor_id, method, body)
        engine = await self._engine()
        try:
            resp = await engine.invoke(actor_type, actor_id, method, body, headers)
        except AppChannelError as exc:
            raise DaprError("ERR_ACTOR_INVOKE_METHOD", f"error invoke actor method: {exc}") from exc
        return _checked(resp)

    async def _remote(
        self,
        owner: str,
        version: Version,
        actor_type: str,
        actor_id: str,
        method: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> AppResponse | None:
        if self._forwarder is None:
            raise DaprError(
                "ERR_ACTOR_NO_ADDRESS", f"actor {actor_type}/{actor_id} is hosted elsewhere"
            )
        return await self._forwarder.forward(
            owner, version, actor_type, actor_id, method, body, headers
        )

    async def _engine(self) -> ActorEngine:
        if self.engine is None:
            try:
                async with asyncio.timeout(self._settings.call_deadline):
                    await self.engine_ready.wait()
            except TimeoutError:
                raise DaprError(
                    "ERR_ACTOR_NO_APP_CHANNEL", "the app has not reported its actor types yet"
                ) from None
        assert self.engine is not None
        return self.engine

    # --- state -----------------------------------------------------------------------------

    async def get_state(self, actor_type: str, actor_id: str, key: str) -> bytes | None:
        self._check_names(actor_type, actor_id)
        return await self._need_state().get(actor_type, actor_id, key)

    async def transact_state(
        self, actor_type: str, actor_id: str, ops: Sequence[ActorStateOp]
    ) -> None:
        self._check_names(actor_type, actor_id)
        await self._need_state().transact(actor_type, actor_id, ops)

    # --- reminders (durable, in the control plane's scheduler) ------------------------------

    async def create_reminder(
        self, actor_type: str, actor_id: str, name: str, body: Mapping[str, Any]
    ) -> None:
        self._check_names(actor_type, actor_id)
        engine = self.engine
        if engine is None or actor_type not in engine.hosted_types():
            raise DaprError(
                "ERR_ACTOR_REMINDER_NON_HOSTED",
                f"can't create reminder for actor type {actor_type}: not hosted by this app",
            )
        request = {
            "actorType": actor_type,
            "actorId": actor_id,
            "name": name,
            **{k: body.get(k) for k in ("dueTime", "period", "ttl", "data", "overwrite")},
        }
        answer = await self._call_reminders("Register", request, "ERR_ACTOR_REMINDER_CREATE")
        if answer.get("error") == "exists":
            raise DaprError("ERR_ACTOR_REMINDER_ALREADY_EXISTS", answer["message"])
        if answer.get("error"):
            raise DaprError(
                "ERR_ACTOR_REMINDER_CREATE",
                f"error creating actor reminder: {answer['message']}",
                http_status=400,
            )

    async def get_reminder(self, actor_type: str, actor_id: str, name: str) -> dict[str, Any]:
        self._check_names(actor_type, actor_id)
        request = {"actorType": actor_type, "actorId": actor_id, "name": name}
        answer = await self._call_reminders("Get", request, "ERR_ACTOR_REMINDER_GET")
        if "reminder" not in answer:
            raise DaprError("ERR_ACTOR_REMINDER_NOT_FOUND", f"reminder {name} not found")
        reminder: dict[str, Any] = answer["reminder"]
        return reminder

    async def delete_reminder(self, actor_type: str, actor_id: str, name: str) -> None:
        self._check_names(actor_type, actor_id)
        request = {"actorType": actor_type, "actorId": actor_id, "name": name}
        await self._call_reminders("Delete", request, "ERR_ACTOR_REMINDER_DELETE")

    async def list_reminders(self, actor_type: str, actor_id: str = "") -> list[dict[str, Any]]:
        request = {"actorType": actor_type, "actorId": actor_id}
        answer = await self._call_reminders("List", request, "ERR_ACTOR_REMINDER_GET")
        reminders: list[dict[str, Any]] = answer.get("reminders", [])
        return reminders

    async def delete_reminders(self, actor_type: str, actor_id: str = "") -> int:
        """Every reminder of ``actor_type`` (of one actor if ``actor_id``); how many."""
        if not actor_type:
            raise DaprError("ERR_BAD_REQUEST", "actor type must not be empty")
        request = {"actorType": actor_type, "actorId": actor_id}
        answer = await self._call_reminders("DeleteAll", request, "ERR_ACTOR_REMINDER_DELETE")
        return int(answer.get("deleted", 0))

    async def _call_reminders(
        self, method: str, request: dict[str, Any], code: str
    ) -> dict[str, Any]:
        if self._reminders is None:
            raise DaprError(code, "reminders need the control plane, which is not configured")
        try:
            return await self._reminders.call(method, request)
        except Exception as exc:
            raise DaprError(code, f"error with actor reminder: {exc}") from exc

    async def fire(self, actor_type: str, actor_id: str, name: str, payload: bytes) -> str:
        """A reminder came due here: run it as a turn; answer the scheduler's outcome."""
        engine = self.engine
        if engine is None or actor_type not in engine.hosted_types():
            return "unroutable"
        try:
            resp = await engine.callback(actor_type, actor_id, "remind", name, payload)
        except NotOwner:
            return "unroutable"
        except (AppChannelError, DaprError) as exc:
            log.info("reminder %s of %s/%s failed: %s", name, actor_type, actor_id, exc)
            return "failed"
        if (
            resp.headers.get(CANCEL_HEADER, resp.headers.get("X-Daprremindercancel", "")).lower()
            == "true"
        ):
            return "cancel"
        return "delivered" if 200 <= resp.status < 300 else "failed"

    # --- timers (in memory, on the owner) --------------------------------------------------

    async def create_timer(
        self, actor_type: str, actor_id: str, name: str, body: Mapping[str, Any]
    ) -> None:
        self._check_names(actor_type, actor_id)
        engine = self.engine
        if engine is None or actor_type not in engine.hosted_types():
            raise DaprError(
                "ERR_ACTOR_TIMER_CREATE", f"actor type {actor_type} is not hosted by this app"
            )
        # Loaded on the first timer: the schedule parser's cron and ISO 8601 libraries are
        # start-up time an app without actor timers never needs (issue 21).
        from tandem.scheduler.schedule import ScheduleError, reminder_schedule

        now = datetime.now(UTC)
        try:
            schedule = reminder_schedule(
                due_time=str(body.get("dueTime") or ""),
                period=str(body.get("period") or ""),
                ttl=str(body.get("ttl") or ""),
                now=now,
            )
        except ScheduleError as exc:
            raise DaprError("ERR_ACTOR_TIMER_CREATE", str(exc), http_status=400) from exc
        period = None
        if schedule.step is not None:
            period = ((schedule.first + schedule.step) - schedule.first).total_seconds()  # type: ignore[operator]
        payload = json.dumps(
            {
                "callback": body.get("callback") or "",
                "dueTime": body.get("dueTime") or "",
                "period": body.get("period") or "",
                "data": body.get("data"),
            }
        ).encode()
        spec = TimerSpec(
            request={k: body.get(k) for k in ("dueTime", "period", "ttl", "callback", "data")},
            name=name,
            due=(schedule.first - now).total_seconds(),
            period=period,
            repeats=schedule.repeats,
            expires=None if schedule.expires is None else (schedule.expires - now).total_seconds(),
            payload=payload,
        )
        try:
            await engine.create_timer(actor_type, actor_id, spec)
        except NotOwner as exc:
            raise DaprError(
                "ERR_ACTOR_TIMER_CREATE",
                f"actor {actor_type}/{actor_id} is not active on this host: {exc}",
                http_status=403,
            ) from exc

    async def delete_timer(self, actor_type: str, actor_id: str, name: str) -> None:
        self._check_names(actor_type, actor_id)
        if self.engine is not None:
            self.engine.delete_timer(actor_type, actor_id, name)

    def list_timers(self, actor_type: str, actor_id: str = "") -> list[dict[str, Any]]:
        """The timers of the actors active on this host (timers live with the activation)."""
        if self.engine is None:
            return []
        return [
            {"actorType": actor_type, "actorID": aid, "name": name, **spec.request}
            for aid, name, spec in self.engine.timers(actor_type, actor_id)
        ]

    def get_timer(self, actor_type: str, actor_id: str, name: str) -> dict[str, Any]:
        self._check_names(actor_type, actor_id)
        found = [t for t in self.list_timers(actor_type, actor_id) if t["name"] == name]
        if not found:
            raise DaprError(
                "ERR_ACTOR_TIMER_NOT_FOUND",
                f"timer {name} of {actor_type}/{actor_id} is not active on this host",
            )
        return found[0]

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _check_names(actor_type: str, actor_id: str) -> None:
        if actor_type.startswith(RESERVED_PREFIX):
            raise DaprError(
                "ERR_ACTOR_TYPE_RESERVED", f"actor type {actor_type} is reserved for Dapr"
            )
        if not actor_type or not actor_id:
            raise DaprError("ERR_BAD_REQUEST", "actor type and id must not be empty")

    def _need_placement(self) -> Placement:
        if self._placement is None:
            raise DaprError(
                "ERR_ACTOR_NO_PLACEMENT", "actors need the control plane, which is not configured"
            )
        return self._placement

    def _need_state(self) -> ActorState:
        if self._state is None:
            raise DaprError(
                "ERR_ACTOR_RUNTIME_NOT_FOUND",
                "the state store is not configured to use the actor runtime: mark one state "
                'store with actorStateStore: "true"',
            )
        return self._state


def _call_failed(exc: BaseException) -> bool:
    """What a Resiliency policy retries and its breaker counts: the call did not get an
    answer from the actor (a timeout, an unreachable owner, the app's error), not a
    request that was wrong to begin with."""
    if isinstance(exc, DaprError):
        return exc.error_code in _RETRIED_CODES
    return isinstance(exc, TimeoutError | AppChannelError)


_RETRIED_CODES = frozenset(
    {
        "ERR_ACTOR_INVOKE_METHOD",
        "ERR_ACTOR_NO_ADDRESS",
        "ERR_ACTOR_NO_PLACEMENT",
        "ERR_ACTOR_NO_APP_CHANNEL",
    }
)


def _checked(resp: AppResponse) -> AppResponse:
    """An actor method's non-2xx answer is an error to the caller, as in Dapr."""
    if 200 <= resp.status < 300:
        return resp
    detail = resp.body[:1024].decode("utf-8", "replace")
    raise DaprError(
        "ERR_ACTOR_INVOKE_METHOD",
        f"error invoke actor method: error from actor service: ({resp.status}) {detail}",
    )
