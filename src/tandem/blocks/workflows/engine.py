"""The workflow engine: event-sourced instances, work items for the app's worker, timers.

Each instance is a :class:`Record`. New events (start, activity results, timer firings,
external events, child results, terminate/suspend/resume) land in its inbox (committed);
a turn hands the worker ``pastEvents`` (the history) + ``newEvents`` (the inbox) and gets
back actions. Completing a turn commits, in one write, the history grown by the consumed
events and by one event per action, the inbox minus what was consumed, and the outbox of
messages for other instances; only then are activities dispatched, timers set and
messages delivered. A crash before the commit repeats the turn; after it, recovery
re-dispatches what the history says is pending. Activities run at least once; a committed
step is never re-run because its result is in the history the replay reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import grpc
from dapr.ext.workflow._durabletask.internal import history_events_pb2 as hpb
from dapr.ext.workflow._durabletask.internal import orchestration_pb2 as opb
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb

from tandem.blocks.actors.engine import NotOwner
from tandem.blocks.errors import DaprError
from tandem.blocks.workflows.actions import (
    children,
    completed_event,
    completed_task,
    copy_event,
    parent_of,
    recursive_terminate,
    result_message,
    running_children,
    translate,
)
from tandem.blocks.workflows.record import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    PENDING,
    RUNNING,
    STATUS_BY_NAME,
    SUSPENDED,
    TERMINAL,
    TERMINATED,
    Record,
    event,
    now,
    text,
    timestamp,
)
from tandem.blocks.workflows.store import WorkflowStore
from tandem.blocks.workflows.work_queue import WorkQueue
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics

log = logging.getLogger("tandem.workflows")

# The SDK's fire time for an indefinite wait_for_external_event: never fires.
SENTINEL_SECONDS = 253402300799

# Arms a durable timer: (instance id, timer id, fire at). The engine's default keeps it in
# memory; recovery re-arms every pending timer from the history either way.
TimerSetter = Callable[[str, int, datetime], Awaitable[None]]


class Peers(Protocol):
    """What one instance asks of another, wherever its owner runs (``ownership.Workflows``
    routes these; without placement the engine answers them itself)."""

    async def deliver(self, target: str, sender: dict[str, str], msg: dict[str, Any]) -> None: ...

    async def create(self, rec: Record) -> None: ...

    async def purge(self, instance_id: str, recursive: bool, force: bool = False) -> int: ...


def not_found(instance_id: str) -> DaprError:
    return DaprError(
        "ERR_INSTANCE_ID_NOT_FOUND",
        f"unable to find workflow with the provided instance ID: {instance_id}",
        http_status=404,
        grpc_status=grpc.StatusCode.NOT_FOUND,
    )


@dataclass(slots=True)
class _Instance:
    rec: Record
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: str = ""  # the token of the turn handed out, if any
    dispatched: int = 0  # how many inbox events that turn consumes
    started: hpb.HistoryEvent | None = None  # its WorkflowStarted event
    delayed: asyncio.TimerHandle | None = None  # a scheduled start's wake-up

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(slots=True)
class _Activity:
    instance_id: str
    execution_id: str
    task_id: int
    name: str = ""
    since: float = 0.0  # monotonic time of the dispatch


class WorkflowEngine:
    def __init__(
        self,
        store: WorkflowStore,
        *,
        max_workflows: int = 0,
        max_activities: int = 0,
        retention: Mapping[int, timedelta] | None = None,
        metrics: RuntimeMetrics = NO_METRICS,
    ) -> None:
        self.metrics = metrics
        self._store = store
        self._instances: dict[str, _Instance] = {}
        self._queue = WorkQueue(max_workflows, max_activities)
        self._activities: dict[str, _Activity] = {}
        self._streams = 0
        self._stream_ids = 0
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._set_timer: TimerSetter = self._memory_timer
        self._on_worker: Callable[[], Awaitable[None]] | None = None
        self._retention = dict(retention or {})  # terminal status -> how long it is kept
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loaded = asyncio.Event()
        # Whether this host may run an instance now (placement's fence; always, alone).
        self._owns: Callable[[str], bool] = lambda instance_id: True
        self.peers: Peers = self
        self._loading: dict[str, asyncio.Future[_Instance | None]] = {}
        self._adopting = asyncio.Lock()

    @property
    def connected_workers(self) -> int:
        return self._streams

    @contextlib.asynccontextmanager
    async def measure(self, operation: str) -> AsyncIterator[None]:
        """Record one workflow API request (Dapr's operation names) with its outcome."""
        start = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.metrics.workflow_operation(operation, ok, (time.perf_counter() - start) * 1000)

    def on_worker(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` when a worker stream opens (the wiring hosts the workflow type)."""
        self._on_worker = hook

    def use_timers(self, setter: TimerSetter) -> None:
        """Set durable timers elsewhere (the scheduler) instead of in memory."""
        self._set_timer = setter

    def use_ownership(self, owns: Callable[[str], bool], peers: Peers) -> None:
        """Run only the instances ``owns`` allows; reach the others through ``peers``."""
        self._owns = owns
        self.peers = peers

    def owns(self, instance_id: str) -> bool:
        return self._owns(instance_id)

    def running(self) -> int:
        """How many unfinished instances run here."""
        return sum(1 for inst in self._instances.values() if not inst.rec.terminal)

    # --- lifecycle -------------------------------------------------------------------------

    async def recover(self) -> None:
        """Resume every unfinished instance this host owns from its committed record."""
        try:
            await self.adopt()
        finally:
            self._loaded.set()

    async def adopt(self) -> None:
        """Take up the instances of the index this host owns and does not run yet: at start,
        and after each placement change (they come from the store as their last owner
        committed them)."""
        async with self._adopting:
            index = await self._store.load_index()
            for instance_id, entry in index.items():
                if instance_id in self._instances or not self._owns(instance_id):
                    continue
                status = STATUS_BY_NAME.get(entry[1], RUNNING)
                if status in TERMINAL:
                    if len(entry) > 3 and entry[3] and (instance_id, -1) not in self._timers:
                        self._retain(instance_id, status, datetime.fromisoformat(entry[3]))
                    if not (len(entry) > 4 and entry[4]):
                        continue  # its last messages went: nothing to do until asked
                try:
                    await self._load(instance_id)
                except NotOwner:
                    continue  # moved again meanwhile

    async def release(self) -> None:
        """Stop running every instance this host no longer owns: placement is about to move
        it (the change is acknowledged only after this) or the lease is gone. Its answers
        still out are dropped; its next owner starts from the store."""
        for instance_id, inst in list(self._instances.items()):
            if self._owns(instance_id):
                continue
            async with inst.lock:  # a commit under way completes first
                if self._instances.get(instance_id) is inst:
                    del self._instances[instance_id]
                inst.in_flight = ""
                if inst.delayed is not None:
                    inst.delayed.cancel()
                    inst.delayed = None
            inst.notify()  # waiters ask again, at the new owner
        for key in [k for k in self._timers if not self._owns(k[0])]:
            self._timers.pop(key).cancel()
        for token in [t for t, a in self._activities.items() if not self._owns(a.instance_id)]:
            del self._activities[token]

    async def _resume_pending(self, inst: _Instance, *, deliver: bool = True) -> None:
        rec = inst.rec
        if rec.terminal:
            if deliver:
                await self._deliver(rec)
            return
        done_tasks: set[int] = set()
        fired: set[int] = set()
        for e in [*rec.history, *rec.inbox]:
            kind = e.WhichOneof("eventType")
            if kind == "taskCompleted":
                done_tasks.add(e.taskCompleted.taskScheduledId)
            elif kind == "taskFailed":
                done_tasks.add(e.taskFailed.taskScheduledId)
            elif kind == "timerFired":
                fired.add(e.timerFired.timerId)
        for e in rec.history:
            kind = e.WhichOneof("eventType")
            if kind == "taskScheduled" and e.eventId not in done_tasks:
                self._dispatch_activity(rec, e)
            elif kind == "timerCreated" and e.eventId not in fired:
                await self._arm(rec.instance_id, e.eventId, e.timerCreated.fireAt)
        if deliver:
            await self._deliver(rec)
        self._kick(inst)

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        for inst in self._instances.values():
            if inst.delayed is not None:
                inst.delayed.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("workflow engine task failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- instances -------------------------------------------------------------------------

    def _check_owner(self, instance_id: str) -> None:
        if not self._owns(instance_id):
            raise NotOwner(f"workflow {instance_id} is not placed on this host now")

    async def _get(self, instance_id: str) -> _Instance | None:
        await self._loaded.wait()
        return await self._load(instance_id)

    async def _load(self, instance_id: str) -> _Instance | None:
        """The instance, taken up from the store if it is not running here yet (its pending
        activities and timers resumed). NotOwner: another host runs it."""
        self._check_owner(instance_id)
        inst = self._instances.get(instance_id)
        if inst is not None:
            return inst
        loading = self._loading.get(instance_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[_Instance | None] = asyncio.get_running_loop().create_future()
        self._loading[instance_id] = future
        try:
            rec = await self._store.load(instance_id)
            self._check_owner(instance_id)
            inst = None
            if rec is not None:
                # Another coroutine may have created it meanwhile: keep the first.
                inst = self._instances.setdefault(instance_id, _Instance(rec))
                if inst.rec is rec:
                    await self._resume_pending(inst, deliver=False)
                    if rec.outbox:  # not awaited: a receiver may be loading this one
                        self._spawn(self._deliver(rec))
            future.set_result(inst)
            return inst
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it through the shield
            raise
        finally:
            del self._loading[instance_id]

    async def _must(self, instance_id: str) -> _Instance:
        inst = await self._get(instance_id)
        if inst is None:
            raise not_found(instance_id)
        return inst

    async def start(
        self,
        instance_id: str,
        name: str,
        input: str | None,
        *,
        scheduled_start: datetime | None = None,
        parent: opb.ParentInstanceInfo | None = None,
        execution_id: str | None = None,
    ) -> str:
        existing = await self._get(instance_id)
        if existing is not None:
            async with existing.lock:
                if not existing.rec.terminal:
                    raise DaprError(
                        "ERR_START_WORKFLOW",
                        f"an active workflow with ID '{instance_id}' already exists",
                        grpc_status=grpc.StatusCode.ALREADY_EXISTS,
                        http_status=409,
                    )
                self._instances.pop(instance_id, None)
        at = now()
        execution_id = execution_id or uuid.uuid4().hex
        started = hpb.ExecutionStartedEvent(
            name=name,
            input=text(input),
            workflowInstance=opb.WorkflowInstance(
                instanceId=instance_id, executionId=text(execution_id)
            ),
        )
        if parent is not None:
            started.parentInstance.CopyFrom(parent)
        if scheduled_start is not None:
            started.scheduledStartTimestamp.CopyFrom(timestamp(scheduled_start))
        rec = Record(
            instance_id=instance_id,
            name=name,
            status=PENDING,
            created=at,
            updated=at,
            execution_id=execution_id,
            input=input,
            scheduled_start=scheduled_start,
            parent_id=parent.workflowInstance.instanceId if parent is not None else "",
            inbox=[event(at, executionStarted=started)],
        )
        inst = _Instance(rec)
        async with inst.lock:
            self._instances[instance_id] = inst
            await self._store.save(rec, index=True)
        self._kick(inst)
        return instance_id

    async def state(self, instance_id: str) -> Record | None:
        """The instance as committed (a turn's answer is committed in the background: its
        lock is held until then)."""
        inst = await self._get(instance_id)
        if inst is None:
            return None
        async with inst.lock:
            return inst.rec

    async def wait(
        self, instance_id: str, done: Callable[[Record], bool], timeout: float | None
    ) -> Record | None:
        """The record once ``done`` holds for it (None: the instance does not exist)."""
        async with asyncio.timeout(timeout):
            while True:
                inst = await self._get(instance_id)
                if inst is None:
                    return None
                changed = inst.changed
                async with inst.lock:  # as committed
                    if done(inst.rec):
                        return inst.rec
                await changed.wait()

    async def raise_event(self, instance_id: str, name: str, input: str | None) -> None:
        inst = await self._must(instance_id)
        if inst.rec.terminal:
            raise DaprError(
                "ERR_RAISE_EVENT_WORKFLOW",
                f"workflow instance '{instance_id}' is not running: "
                f"it is {_status_name(inst.rec.status)}",
                grpc_status=grpc.StatusCode.FAILED_PRECONDITION,
            )
        await self._append(
            inst, event(now(), eventRaised=hpb.EventRaisedEvent(name=name, input=text(input)))
        )

    async def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        inst = await self._must(instance_id)
        if inst.rec.terminal:
            return
        terminated = hpb.ExecutionTerminatedEvent(input=text(output), recurse=recursive)
        await self._append(inst, event(now(), executionTerminated=terminated))

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        inst = await self._must(instance_id)
        async with inst.lock:
            self._current_or_moved(inst)
            rec = inst.rec
            if rec.terminal or rec.suspended:
                return
            rec.suspended = True
            rec.status = SUSPENDED
            rec.updated = now()
            rec.inbox.append(
                event(
                    rec.updated, executionSuspended=hpb.ExecutionSuspendedEvent(input=text(reason))
                )
            )
            await self._store.save(rec, index=True)
        inst.notify()
        self._kick(inst)

    async def resume(self, instance_id: str, reason: str | None) -> None:
        inst = await self._must(instance_id)
        async with inst.lock:
            self._current_or_moved(inst)
            rec = inst.rec
            if rec.terminal or not rec.suspended:
                return
            rec.suspended = False
            rec.status = RUNNING
            rec.updated = now()
            rec.inbox.append(
                event(rec.updated, executionResumed=hpb.ExecutionResumedEvent(input=text(reason)))
            )
            await self._store.save(rec, index=True)
        inst.notify()
        self._kick(inst)

    async def purge(self, instance_id: str, recursive: bool, force: bool = False) -> int:
        """Delete a finished instance (and, ``recursive``, its children); how many went."""
        inst = await self._get(instance_id)
        if inst is None:
            return 0
        if not inst.rec.terminal and not force:
            raise DaprError(
                "ERR_PURGE_WORKFLOW",
                f"workflow instance '{instance_id}' is not in a terminal state and cannot be purged",
                grpc_status=grpc.StatusCode.FAILED_PRECONDITION,
            )
        count = 1
        if recursive:
            for child in children(inst.rec):
                count += await self.peers.purge(child, True, force)
        async with inst.lock:
            await self._store.delete([instance_id])
            self._instances.pop(instance_id, None)
            for key in [k for k in self._timers if k[0] == instance_id]:
                self._timers.pop(key).cancel()
        inst.notify()
        return count

    async def rerun(
        self,
        source_id: str,
        event_id: int,
        new_id: str,
        input: str | None,
        *,
        overwrite_input: bool,
        new_child_id: str = "",
    ) -> str:
        """A new instance with ``source_id``'s history up to the task ``event_id`` (an
        activity, timer or child workflow), which runs again (with ``input``, if given)."""
        source = await self._must(source_id)
        if not source.rec.terminal or source.rec.parent_id:
            raise DaprError(
                "ERR_RERUN_WORKFLOW",
                f"workflow instance '{source_id}' must be a finished top-level workflow to rerun",
                grpc_status=grpc.StatusCode.FAILED_PRECONDITION,
            )
        history = source.rec.history
        at = next(
            (
                i
                for i, e in enumerate(history)
                if e.eventId == event_id
                and e.WhichOneof("eventType")
                in ("taskScheduled", "childWorkflowInstanceCreated", "timerCreated")
            ),
            None,
        )
        if at is None:
            raise DaprError(
                "ERR_RERUN_WORKFLOW",
                f"workflow instance '{source_id}' has no task with event ID {event_id}",
                grpc_status=grpc.StatusCode.NOT_FOUND,
            )
        kept = [copy_event(e) for e in history[: at + 1]]
        task = kept[-1]
        kind = str(task.WhichOneof("eventType"))
        if overwrite_input:
            if kind == "timerCreated":
                raise DaprError(
                    "ERR_RERUN_WORKFLOW",
                    "a timer takes no input",
                    grpc_status=grpc.StatusCode.INVALID_ARGUMENT,
                )
            target = getattr(task, kind)
            target.ClearField("input")
            if input is not None:
                target.input.value = input
        execution_id = uuid.uuid4().hex
        for e in kept:
            if e.HasField("executionStarted"):
                e.executionStarted.workflowInstance.instanceId = new_id
                e.executionStarted.workflowInstance.executionId.value = execution_id
        outbox: list[dict[str, Any]] = []
        if kind == "childWorkflowInstanceCreated":
            c = task.childWorkflowInstanceCreated
            c.instanceId = new_child_id or f"{new_id}:{event_id:04x}"
            outbox.append(
                {
                    "kind": "start",
                    "id": c.instanceId,
                    "name": c.name,
                    "input": c.input.value if c.HasField("input") else None,
                    "taskId": event_id,
                }
            )
        t = now()
        rec = Record(
            instance_id=new_id,
            name=source.rec.name,
            status=RUNNING,
            created=t,
            updated=t,
            execution_id=execution_id,
            input=source.rec.input,
            history=kept,
            outbox=outbox,
        )
        await self.peers.create(rec)
        return new_id

    async def create(self, rec: Record) -> None:
        """Run ``rec``, a new instance made from another's history (a rerun)."""
        if await self._get(rec.instance_id) is not None:
            raise DaprError(
                "ERR_RERUN_WORKFLOW",
                f"a workflow with ID '{rec.instance_id}' already exists",
                grpc_status=grpc.StatusCode.ALREADY_EXISTS,
            )
        inst = _Instance(rec)
        async with inst.lock:
            self._instances[rec.instance_id] = inst
            await self._store.save(rec, index=True)
        await self._resume_pending(inst)

    async def listing(self) -> dict[str, list[Any]]:
        """Every instance of the app, whichever replica runs it."""
        await self._loaded.wait()
        return await self._store.load_index()

    async def history(self, instance_id: str) -> list[hpb.HistoryEvent]:
        inst = await self._must(instance_id)
        return list(inst.rec.history)

    # --- inbox and turns -------------------------------------------------------------------

    def _current_or_moved(self, inst: _Instance) -> None:
        """Raise NotOwner if ``inst`` stopped running here (placement moved it) while the
        caller waited for its lock."""
        if self._instances.get(inst.rec.instance_id) is not inst:
            raise NotOwner(f"workflow {inst.rec.instance_id} moved")

    async def _append(self, inst: _Instance, *events: hpb.HistoryEvent) -> None:
        async with inst.lock:
            self._current_or_moved(inst)
            if inst.rec.terminal:
                return
            inst.rec.inbox.extend(events)
            inst.rec.updated = now()
            await self._store.save(inst.rec, index=False)
        self._kick(inst)

    def _kick(self, inst: _Instance) -> None:
        """Hand out a turn if the instance has new events and none is out."""
        rec = inst.rec
        if inst.in_flight or not rec.inbox or rec.terminal:
            return
        if self._instances.get(rec.instance_id) is not inst or not self._owns(rec.instance_id):
            return  # moved away: its new owner hands out the turn
        if rec.scheduled_start is not None and rec.status == PENDING:
            wait = (rec.scheduled_start - now()).total_seconds()
            if wait > 0:
                if inst.delayed is None:
                    loop = asyncio.get_running_loop()
                    inst.delayed = loop.call_later(wait, self._wake_delayed, inst)
                return
        token = uuid.uuid4().hex
        if not rec.history and rec.status == PENDING:
            since = rec.scheduled_start or rec.created
            self.metrics.workflow_scheduled(rec.name, (now() - since).total_seconds() * 1000)
        inst.in_flight = token
        inst.dispatched = len(rec.inbox)
        inst.started = event(now(), workflowStarted=hpb.WorkflowStartedEvent())
        request = spb.WorkflowRequest(
            instanceId=rec.instance_id,
            executionId=text(rec.execution_id),
            pastEvents=rec.history,
            newEvents=[inst.started, *rec.inbox],
        )
        self._queue.put(token, spb.WorkItem(workflowRequest=request, completionToken=token))

    def _wake_delayed(self, inst: _Instance) -> None:
        inst.delayed = None
        self._kick(inst)

    def accept_turn(self, response: spb.WorkflowResponse) -> None:
        """Take the worker's answer to a turn and let it go at once: the answer is committed
        in the background. The worker's threads would otherwise wait for each sync to disk
        (the SDK sends its answers one blocking call at a time), and nothing is lost: until
        the commit, nothing the turn asks for has happened, and a crash repeats the turn."""
        self._spawn(self._complete_or_reload(response))

    async def _complete_or_reload(self, response: spb.WorkflowResponse) -> None:
        try:
            await self.complete_turn(response)
        except Exception:
            # As after a crash: forget what is in memory and resume from the last commit
            # (the turn is handed out again).
            log.exception("workflow %s: its turn could not be committed", response.instanceId)
            inst = self._instances.get(response.instanceId)
            if inst is not None:
                async with inst.lock:
                    if self._instances.get(response.instanceId) is inst:
                        del self._instances[response.instanceId]
                    inst.in_flight = ""
                inst.notify()
            with contextlib.suppress(NotOwner):
                await self._load(response.instanceId)

    async def complete_turn(self, response: spb.WorkflowResponse) -> None:
        token = response.completionToken
        self._queue.done(token)
        inst = self._instances.get(response.instanceId)
        if inst is None or not token or inst.in_flight != token:
            return  # a stale answer: the turn was handed out again since
        async with inst.lock:
            if inst.in_flight != token:
                return  # moved away while the answer waited: the new owner repeats the turn
            rec = inst.rec
            assert inst.started is not None
            consumed = rec.inbox[: inst.dispatched]
            history = [*rec.history, inst.started, *consumed]
            inbox = rec.inbox[inst.dispatched :]
            at = now()
            status_before = rec.status
            activities: list[hpb.HistoryEvent] = []
            timers: list[hpb.HistoryEvent] = []
            outbox = list(rec.outbox)
            new_record: Record | None = None
            done_action: Any = None
            for action in response.actions:
                if action.HasField("completeWorkflow"):
                    done_action = action  # the last word: after every other action
                    continue
                kind, e, message = translate(rec.instance_id, action, at)
                if e is not None:
                    history.append(e)
                    if kind == "scheduleTask":
                        activities.append(e)
                    elif kind == "createTimer":
                        timers.append(e)
                if message is not None:
                    outbox.append(message)
            if done_action is not None:
                done = done_action.completeWorkflow
                result = done.result.value if done.HasField("result") else None
                if done.workflowStatus == CONTINUED_AS_NEW:
                    new_record = self._continued(rec, result, list(done.carryoverEvents), inbox, at)
                else:
                    history.append(completed_event(done_action.id, done, at))
                    rec.status = done.workflowStatus
                    rec.output = result
                    rec.failure = (
                        done.failureDetails.SerializeToString()
                        if done.HasField("failureDetails")
                        else b""
                    )
                    rec.completed = at
                    inbox = []
                    parent = parent_of(rec)
                    if parent is not None:
                        outbox.append(result_message(rec, parent, done))
                    if done.workflowStatus == TERMINATED and recursive_terminate(consumed):
                        outbox.extend(
                            {"kind": "terminate", "id": child, "output": None, "recursive": True}
                            for child in running_children(history)
                        )
            if response.HasField("customStatus"):
                rec.custom_status = response.customStatus.value
            if new_record is not None:
                rec = new_record
                inst.rec = rec
                activities, timers = [], []
            else:
                rec.history = history
                rec.inbox = inbox
                if rec.status == PENDING:
                    rec.status = SUSPENDED if rec.suspended else RUNNING
            rec.outbox = outbox
            rec.updated = at
            rec.scheduled_start = None
            await self._store.save(rec, index=rec.status != status_before or new_record is not None)
            inst.in_flight = ""
            inst.started = None
        if rec.terminal and rec.completed is not None:
            self._retain(rec.instance_id, rec.status, rec.completed)
            self.metrics.workflow_ended(
                rec.name,
                _OUTCOME.get(rec.status, "failed"),
                (rec.completed - rec.created).total_seconds() * 1000,
            )
        for e in activities:
            self._dispatch_activity(rec, e)
        for e in timers:
            await self._arm(rec.instance_id, e.eventId, e.timerCreated.fireAt)
        await self._deliver(rec)
        inst.notify()
        self._kick(inst)

    def _continued(
        self,
        rec: Record,
        result: str | None,
        carryover: list[hpb.HistoryEvent],
        leftover: list[hpb.HistoryEvent],
        at: datetime,
    ) -> Record:
        execution_id = uuid.uuid4().hex
        started = hpb.ExecutionStartedEvent(
            name=rec.name,
            input=text(result),
            workflowInstance=opb.WorkflowInstance(
                instanceId=rec.instance_id, executionId=text(execution_id)
            ),
        )
        first = next((e for e in rec.history if e.HasField("executionStarted")), None)
        if first is not None and first.executionStarted.HasField("parentInstance"):
            started.parentInstance.CopyFrom(first.executionStarted.parentInstance)
        for key in [k for k in self._timers if k[0] == rec.instance_id]:
            self._timers.pop(key).cancel()
        return Record(
            instance_id=rec.instance_id,
            name=rec.name,
            status=RUNNING,
            created=rec.created,
            updated=at,
            execution_id=execution_id,
            input=result,
            custom_status=rec.custom_status,
            parent_id=rec.parent_id,
            inbox=[event(at, executionStarted=started), *carryover, *leftover],
            outbox=rec.outbox,
        )

    def _retain(self, instance_id: str, status: int, completed: datetime) -> None:
        """Purge a finished instance once the retention policy for its status runs out."""
        keep = self._retention.get(status)
        if keep is None:
            return
        delay = max(0.0, (completed + keep - now()).total_seconds())
        self._timers[(instance_id, -1)] = asyncio.get_running_loop().call_later(
            delay, lambda: self._spawn(self._expire(instance_id))
        )

    async def _expire(self, instance_id: str) -> None:
        try:
            inst = await self._get(instance_id)
        except NotOwner:
            return  # its owner purges it
        if inst is not None and inst.rec.terminal:
            await self.purge(instance_id, recursive=False)
            log.info("workflow %s purged: its retention ran out", instance_id)

    # --- messages between instances --------------------------------------------------------

    async def _deliver(self, rec: Record) -> None:
        """Apply the committed outbox; each kind is idempotent at its receiver."""
        if not rec.outbox:
            return
        sender = {"id": rec.instance_id, "name": rec.name, "executionId": rec.execution_id}
        kept: list[dict[str, Any]] = []
        for msg in list(rec.outbox):
            try:
                await self.peers.deliver(msg["id"], sender, msg)
            except DaprError as exc:
                if exc.error_code in _UNREACHABLE:
                    kept.append(msg)  # its owner is not reachable now: again later
                    continue
                log.info(
                    "workflow %s: message %s not delivered: %s",
                    rec.instance_id,
                    msg.get("kind"),
                    exc,
                )
        rec.outbox = kept  # persisted with the next commit; until then a crash redelivers
        current = self._instances.get(rec.instance_id)
        if current is None or current.rec is not rec:
            return
        if kept:
            log.info("workflow %s: %d messages wait for their owner", rec.instance_id, len(kept))
            asyncio.get_running_loop().call_later(
                RETRY_DELIVERY, lambda: self._spawn(self._deliver(rec))
            )
        elif rec.terminal:
            # No next commit comes: say now that the messages went (unless it was purged).
            async with current.lock:
                if self._instances.get(rec.instance_id) is current:
                    await self._store.save(rec, index=True)

    async def deliver(self, target: str, sender: dict[str, str], msg: dict[str, Any]) -> None:
        """A message from instance ``sender`` to ``target`` (run here)."""
        kind = msg["kind"]
        if kind == "start":
            existing = await self._get(msg["id"])
            if existing is not None and existing.rec.parent_id == sender["id"]:
                return
            parent = opb.ParentInstanceInfo(
                taskScheduledId=int(msg["taskId"]),
                name=text(sender["name"]),
                workflowInstance=opb.WorkflowInstance(
                    instanceId=sender["id"], executionId=text(sender["executionId"])
                ),
            )
            await self.start(msg["id"], msg["name"], msg.get("input"), parent=parent)
        elif kind == "event":
            receiver = await self._get(msg["id"])
            if receiver is not None and not receiver.rec.terminal:
                await self._append(
                    receiver,
                    event(
                        now(),
                        eventRaised=hpb.EventRaisedEvent(
                            name=msg["name"], input=text(msg.get("input"))
                        ),
                    ),
                )
        elif kind == "terminate":
            receiver = await self._get(msg["id"])
            if receiver is not None:
                await self.terminate(msg["id"], msg.get("output"), bool(msg.get("recursive")))
        elif kind == "result":
            receiver = await self._get(msg["id"])
            if (
                receiver is None
                or receiver.rec.terminal
                or receiver.rec.execution_id != msg.get("executionId")
            ):
                return
            result = hpb.HistoryEvent()
            result.ParseFromString(bytes.fromhex(msg["event"]))
            task_id = completed_task(result)
            if any(
                completed_task(e) == task_id for e in [*receiver.rec.history, *receiver.rec.inbox]
            ):
                return
            await self._append(receiver, result)

    # --- activities ------------------------------------------------------------------------

    def _dispatch_activity(self, rec: Record, scheduled: hpb.HistoryEvent) -> None:
        s = scheduled.taskScheduled
        token = uuid.uuid4().hex
        request = spb.ActivityRequest(
            name=s.name,
            input=s.input if s.HasField("input") else None,
            workflowInstance=opb.WorkflowInstance(
                instanceId=rec.instance_id, executionId=text(rec.execution_id)
            ),
            taskId=scheduled.eventId,
            taskExecutionId=s.taskExecutionId,
        )
        self._activities[token] = _Activity(
            rec.instance_id, rec.execution_id, scheduled.eventId, s.name, time.monotonic()
        )
        self._queue.put(token, spb.WorkItem(activityRequest=request, completionToken=token))

    async def complete_activity(self, response: spb.ActivityResponse) -> None:
        activity = self._activities.pop(response.completionToken, None)
        self._queue.done(response.completionToken)
        if activity is None:
            return  # already answered (or from before a restart: the re-dispatch answers)
        self.metrics.activity_ended(
            activity.name,
            not response.HasField("failureDetails"),
            (time.monotonic() - activity.since) * 1000,
        )
        try:
            inst = await self._get(activity.instance_id)
        except NotOwner:
            return  # moved away: its new owner dispatched the activity again
        if inst is None or inst.rec.execution_id != activity.execution_id:
            return
        if response.HasField("failureDetails"):
            result = event(
                now(),
                taskFailed=hpb.TaskFailedEvent(
                    taskScheduledId=activity.task_id, failureDetails=response.failureDetails
                ),
            )
        else:
            result = event(
                now(),
                taskCompleted=hpb.TaskCompletedEvent(
                    taskScheduledId=activity.task_id,
                    result=response.result if response.HasField("result") else None,
                ),
            )
        async with inst.lock:
            rec = inst.rec
            if self._instances.get(activity.instance_id) is not inst:
                return
            if rec.terminal or any(
                completed_task(e) == activity.task_id for e in [*rec.history, *rec.inbox]
            ):
                return
            # Not committed here: the turn that consumes it commits it. A crash before
            # loses it, and recovery dispatches the activity again (at least once).
            rec.inbox.append(result)
            rec.updated = now()
        self._kick(inst)

    # --- timers ----------------------------------------------------------------------------

    async def _arm(self, instance_id: str, timer_id: int, fire_at: Any) -> None:
        if fire_at.seconds >= SENTINEL_SECONDS:
            return
        at = fire_at.ToDatetime(tzinfo=now().tzinfo)
        try:
            await self._set_timer(instance_id, timer_id, at)
        except Exception as exc:  # the scheduler is away: keep it here until it is back
            log.warning("workflow %s: timer %d kept in memory: %s", instance_id, timer_id, exc)
            await self._memory_timer(instance_id, timer_id, at)

    async def _memory_timer(self, instance_id: str, timer_id: int, at: datetime) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, (at - now()).total_seconds())
        old = self._timers.pop((instance_id, timer_id), None)
        if old is not None:
            old.cancel()
        self._timers[(instance_id, timer_id)] = loop.call_later(
            delay, lambda: self._spawn(self.fire_timer(instance_id, timer_id))
        )

    async def fire_timer(self, instance_id: str, timer_id: int) -> bool:
        """A durable timer came due: add TimerFired once. False: the instance is gone.
        NotOwner: another host runs it now."""
        self._timers.pop((instance_id, timer_id), None)
        inst = await self._get(instance_id)
        if inst is None:
            return False
        async with inst.lock:
            self._current_or_moved(inst)
            rec = inst.rec
            created = next(
                (e for e in rec.history if e.eventId == timer_id and e.HasField("timerCreated")),
                None,
            )
            if rec.terminal or created is None:
                return True
            if any(
                e.HasField("timerFired") and e.timerFired.timerId == timer_id
                for e in [*rec.history, *rec.inbox]
            ):
                return True
            fired = hpb.TimerFiredEvent(fireAt=created.timerCreated.fireAt, timerId=timer_id)
            # Committed with the turn that consumes it; after a crash recovery re-arms the
            # timer, which is due and fires at once.
            rec.inbox.append(event(now(), timerFired=fired))
            rec.updated = now()
        self._kick(inst)
        return True

    # --- the worker's stream ---------------------------------------------------------------

    async def work_items(self) -> AsyncIterator[spb.WorkItem]:
        """Work for one connected worker stream; what it leaves unanswered goes back."""
        if self._on_worker is not None:
            await self._on_worker()
        self._stream_ids += 1
        stream = self._stream_ids
        self._streams += 1
        try:
            while True:
                _, item = await self._queue.take(stream, self._current)
                yield item
        finally:
            self._streams -= 1
            self._queue.release(stream)

    def _current(self, token: str, item: spb.WorkItem) -> bool:
        if item.HasField("activityRequest"):
            return token in self._activities
        inst = self._instances.get(item.workflowRequest.instanceId)
        return inst is not None and inst.in_flight == token


_OUTCOME = {COMPLETED: "success", FAILED: "failed", TERMINATED: "terminated"}
# A message whose receiver's owner cannot be reached now stays in the outbox, sent again
# after this many seconds.
RETRY_DELIVERY = 1.0
_UNREACHABLE = frozenset(
    {"ERR_ACTOR_NO_ADDRESS", "ERR_ACTOR_NO_PLACEMENT", "ERR_ACTOR_INVOKE_METHOD"}
)


def _status_name(status: int) -> str:
    from tandem.blocks.workflows.record import STATUS_NAMES

    return STATUS_NAMES.get(status, str(status))
