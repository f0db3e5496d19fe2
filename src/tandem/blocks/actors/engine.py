"""The runtime's actor engine: activations, turns, timers, idle and rebalance deactivation.

Transport-neutral: the app is reached through an ``ActorApp`` (HTTP callbacks or the
gRPC actor stream), and the question "may this host run a turn of this actor now?" is
asked of a ``Placement`` (the fence of ``tandem.placement``) before each turn starts and
again once the turn is granted, so a table change that arrives while a call queues is
never ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tandem.blocks.actors.config import ActorConfig, TypeSettings
from tandem.blocks.actors.turns import TurnLock
from tandem.blocks.app_channel import AppResponse
from tandem.blocks.errors import DaprError
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics

log = logging.getLogger("tandem.actors")

REENTRANCY_HEADER = "dapr-reentrancy-id"

ActorKey = tuple[str, str]  # (type, id)


class ActorApp(Protocol):
    async def invoke(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: Mapping[str, str]
    ) -> AppResponse: ...

    async def deactivate(self, actor_type: str, actor_id: str) -> None: ...

    async def callback(
        self, actor_type: str, actor_id: str, kind: str, name: str, payload: bytes
    ) -> AppResponse:
        """``kind`` is ``remind`` or ``timer``."""
        ...


class Placement(Protocol):
    def serves(self, actor_type: str, actor_id: str) -> bool: ...


class NotOwner(Exception):
    """This host may not run the actor now (it moved, or a change is in flight): retry
    through placement."""


@dataclass(eq=False, slots=True)
class _Activation:
    key: ActorKey
    settings: TypeSettings
    lock: TurnLock = field(default_factory=TurnLock)
    last_used: float = field(default_factory=time.monotonic)
    closing: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    timers: dict[str, tuple[asyncio.Task[None], TimerSpec]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TimerSpec:
    name: str
    due: float  # seconds from now to the first fire
    period: float | None  # None: fire once
    repeats: int | None  # None: until deleted or expired
    expires: float | None  # seconds from now, or None
    payload: bytes  # the JSON body the app's timer callback receives
    request: Mapping[str, Any] = field(default_factory=dict)  # as registered (for listing)


class ActorEngine:
    def __init__(
        self,
        config: ActorConfig,
        app: ActorApp,
        placement: Placement,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: RuntimeMetrics = NO_METRICS,
    ) -> None:
        self._metrics = metrics
        self._config = config
        self._app = app
        self._placement = placement
        self._clock = clock
        self._active: dict[ActorKey, _Activation] = {}
        self._idle_task: asyncio.Task[None] | None = None

    # --- what other parts ask ------------------------------------------------------------

    def hosted_types(self) -> list[str]:
        return sorted(self._config.types)

    def active_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self._config.types, 0)
        for actor_type, _ in self._active:
            counts[actor_type] = counts.get(actor_type, 0) + 1
        return counts

    def active_ids(self, actor_type: str) -> list[str]:
        return sorted(i for t, i in self._active if t == actor_type)

    def settings(self, actor_type: str) -> TypeSettings:
        settings = self._config.settings(actor_type)
        if settings is None:
            raise DaprError(
                "ERR_ACTOR_INSTANCE_MISSING",
                f"actor type {actor_type} is not hosted by this app",
                http_status=400,
            )
        return settings

    # --- turns ----------------------------------------------------------------------------

    async def invoke(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: Mapping[str, str]
    ) -> AppResponse:
        """Run one method call as a turn of the actor (activating it if needed)."""
        settings = self.settings(actor_type)
        headers = dict(headers)
        if settings.reentrancy and not headers.get(REENTRANCY_HEADER):
            headers[REENTRANCY_HEADER] = str(uuid.uuid4())
        chain = headers.get(REENTRANCY_HEADER) if settings.reentrancy else None

        async def call() -> AppResponse:
            return await self._app.invoke(actor_type, actor_id, method, body, headers)

        return await self._turn((actor_type, actor_id), settings, chain, call)

    async def callback(
        self, actor_type: str, actor_id: str, kind: str, name: str, payload: bytes
    ) -> AppResponse:
        """A reminder or timer firing, as a turn of its own."""
        settings = self.settings(actor_type)

        async def call() -> AppResponse:
            return await self._app.callback(actor_type, actor_id, kind, name, payload)

        try:
            resp = await self._turn((actor_type, actor_id), settings, None, call)
        except NotOwner:
            raise  # not fired here: it runs at the actor's owner
        except Exception:
            self._metrics.actor_fired(actor_type, kind, False)
            raise
        self._metrics.actor_fired(actor_type, kind, 200 <= resp.status < 300)
        return resp

    async def _turn(
        self,
        key: ActorKey,
        settings: TypeSettings,
        chain: str | None,
        call: Callable[[], Awaitable[AppResponse]],
    ) -> AppResponse:
        while True:
            if not self._placement.serves(*key):
                raise NotOwner(f"{key[0]}/{key[1]} is not placed on this host now")
            act = self._active.get(key)
            if act is None:
                act = self._active[key] = _Activation(key, settings)
                self._metrics.actor_activation(key[0], True)
            elif act.closing and (chain is None or chain != act.lock.chain):
                await act.closed.wait()  # deactivating: start over with a fresh activation
                continue
            self._metrics.actor_waiting(key[0], 1)
            try:
                await act.lock.acquire(
                    chain, reentrant=settings.reentrancy, max_depth=settings.max_stack_depth
                )
            finally:
                self._metrics.actor_waiting(key[0], -1)
            try:
                if self._active.get(key) is not act:
                    continue  # deactivated while we queued
                if not self._placement.serves(*key):
                    raise NotOwner(f"{key[0]}/{key[1]} moved while the call waited its turn")
                act.last_used = self._clock()
                try:
                    return await call()
                finally:
                    act.last_used = self._clock()
            finally:
                act.lock.release()

    # --- deactivation ---------------------------------------------------------------------

    async def deactivate(self, actor_type: str, actor_id: str, *, drain: bool = True) -> bool:
        """Deactivate one actor: wait for its turn (up to ``drainOngoingCallTimeout`` when
        ``drain``), tell the app, forget it. False if it was not active."""
        act = self._active.get((actor_type, actor_id))
        if act is None or act.closing:
            return False
        act.closing = True
        for task, _ in act.timers.values():
            task.cancel()
        acquired = False
        try:
            timeout = act.settings.drain_timeout.total_seconds() if drain else 0.0
            try:
                async with asyncio.timeout(timeout or None):
                    await act.lock.acquire(None, reentrant=False, max_depth=1)
                acquired = True
            except TimeoutError:
                log.warning(
                    "actor %s/%s still busy after %.1fs; deactivating anyway",
                    actor_type,
                    actor_id,
                    timeout,
                )
            try:
                await self._app.deactivate(actor_type, actor_id)
            except Exception as exc:  # the app is gone or refused: the activation ends anyway
                log.info("deactivating %s/%s in the app failed: %s", actor_type, actor_id, exc)
        finally:
            if self._active.get((actor_type, actor_id)) is act:
                del self._active[(actor_type, actor_id)]
                self._metrics.actor_activation(actor_type, False)
            if acquired:
                act.lock.release()
            act.closed.set()
        return True

    async def rebalance(self) -> int:
        """Deactivate every active actor this host no longer serves (after a placement
        ``Prepare``); returns how many. The caller acknowledges the change afterwards."""
        lost = [key for key in self._active if not self._placement.serves(*key)]
        await asyncio.gather(
            *(
                self.deactivate(t, i, drain=self._active[(t, i)].settings.drain_rebalanced)
                for t, i in lost
            )
        )
        return len(lost)

    async def deactivate_all(self) -> None:
        await asyncio.gather(*(self.deactivate(t, i) for t, i in list(self._active)))

    async def deactivate_idle(self) -> int:
        now = self._clock()
        idle = [
            key
            for key, act in self._active.items()
            if not act.lock.busy
            and now - act.last_used >= act.settings.idle_timeout.total_seconds()
        ]
        await asyncio.gather(*(self.deactivate(t, i) for t, i in idle))
        return len(idle)

    async def run_idle_sweeper(self) -> None:
        """Check for idle actors at a tenth of the shortest idle timeout (at most every 10 s)."""
        if not self._config.types:
            return
        shortest = min(s.idle_timeout.total_seconds() for s in self._config.types.values())
        interval = min(10.0, max(0.05, shortest / 10))
        while True:
            await asyncio.sleep(interval)
            await self.deactivate_idle()

    # --- timers (in memory, owned by the activation) -------------------------------------------

    async def create_timer(self, actor_type: str, actor_id: str, spec: TimerSpec) -> None:
        settings = self.settings(actor_type)
        key = (actor_type, actor_id)
        if not self._placement.serves(*key):
            raise NotOwner(f"{actor_type}/{actor_id} is not placed on this host now")
        act = self._active.get(key)
        if act is None or act.closing:
            act = self._active[key] = _Activation(key, settings)
            self._metrics.actor_activation(actor_type, True)
        old = act.timers.pop(spec.name, None)
        if old is not None:
            old[0].cancel()
        act.timers[spec.name] = (asyncio.create_task(self._run_timer(act, spec)), spec)

    def timers(self, actor_type: str, actor_id: str = "") -> list[tuple[str, str, TimerSpec]]:
        """(actor id, name, spec) of the live timers of this host's ``actor_type`` actors
        (of ``actor_id`` only, if given)."""
        return [
            (key[1], name, spec)
            for key, act in self._active.items()
            if key[0] == actor_type and (not actor_id or key[1] == actor_id) and not act.closing
            for name, (_, spec) in act.timers.items()
        ]

    def delete_timer(self, actor_type: str, actor_id: str, name: str) -> bool:
        act = self._active.get((actor_type, actor_id))
        timer = None if act is None else act.timers.pop(name, None)
        if timer is None:
            return False
        timer[0].cancel()
        return True

    async def _run_timer(self, act: _Activation, spec: TimerSpec) -> None:
        start = self._clock()
        fired = 0
        actor_type, actor_id = act.key
        try:
            while True:
                # Anchored to the first due time, so a slow callback does not shift the rest.
                at = spec.due + fired * (spec.period or 0.0)
                if spec.expires is not None and at > spec.expires:
                    return
                await asyncio.sleep(max(0.0, start + at - self._clock()))
                try:
                    resp = await self.callback(
                        actor_type, actor_id, "timer", spec.name, spec.payload
                    )
                    if resp.headers.get("X-Daprremindercancel", "").lower() == "true":
                        return
                except (NotOwner, DaprError) as exc:
                    log.info("timer %s of %s/%s: %s", spec.name, actor_type, actor_id, exc)
                    if isinstance(exc, NotOwner):
                        return
                except Exception:
                    log.exception("timer %s of %s/%s failed", spec.name, actor_type, actor_id)
                fired += 1
                if spec.period is None or (spec.repeats is not None and fired >= spec.repeats):
                    return
        finally:
            mine = act.timers.get(spec.name)
            if mine is not None and mine[0] is asyncio.current_task():
                del act.timers[spec.name]

    def start(self) -> None:
        self._idle_task = asyncio.create_task(self.run_idle_sweeper())

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        await self.deactivate_all()
