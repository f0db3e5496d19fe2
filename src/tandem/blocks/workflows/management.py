"""The Dapr workflow management API (start, get, terminate, raise event, pause, resume,
purge) over the engine, with Dapr's error codes; shared by the HTTP routes and the Dapr
gRPC ``*Workflow{Beta1,Alpha1}`` methods. Filtered listing and batch purge/terminate go
beyond Dapr (dapr#8837)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tandem.blocks.errors import DaprError
from tandem.blocks.workflows.ids import check_instance_id, new_instance_id

if TYPE_CHECKING:
    from tandem.blocks.workflows.listing import Filter
    from tandem.blocks.workflows.ownership import Workflows
    from tandem.blocks.workflows.record import Record

# The engine, its records and the listing load the SDK's durable-task protos (the whole
# `dapr.ext.workflow` package): imported on first use, so a sidecar whose app runs no
# workflow never loads them (tests/ext_proc/test_lazy_imports.py).

COMPONENT = "dapr"  # Dapr's one built-in workflow engine component
START_TIME_OPTION = "dapr.workflow.start_time"


def _not_found(instance_id: str) -> DaprError:
    from tandem.blocks.workflows.engine import not_found

    return not_found(instance_id)


def bad_request(code: str, message: str) -> DaprError:
    return DaprError(code, message, http_status=400)


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def view(rec: Record) -> dict[str, Any]:
    """Dapr's answer to a get: the instance and its properties."""
    from tandem.blocks.workflows.record import STATUS_NAMES

    props: dict[str, str] = {}
    if rec.input is not None:
        props["dapr.workflow.input"] = rec.input
    if rec.output is not None:
        props["dapr.workflow.output"] = rec.output
    if rec.custom_status is not None:
        props["dapr.workflow.custom_status"] = rec.custom_status
    if rec.failure:
        failure = rec.state().failureDetails
        props["dapr.workflow.failure.error_type"] = failure.errorType
        props["dapr.workflow.failure.error_message"] = failure.errorMessage
        if failure.HasField("stackTrace"):
            props["dapr.workflow.failure.stack_trace"] = failure.stackTrace.value
    return {
        "instanceID": rec.instance_id,
        "workflowName": rec.name,
        "createdAt": rfc3339(rec.created),
        "lastUpdatedAt": rfc3339(rec.updated),
        "runtimeStatus": STATUS_NAMES[rec.status],
        "properties": props,
    }


def parse_filter(values: dict[str, list[str]]) -> Filter:
    """``runtimeStatus`` (repeatable or comma-separated), ``name``, ``createdFrom``/``createdTo``."""
    from tandem.blocks.workflows.listing import Filter
    from tandem.blocks.workflows.record import STATUS_BY_NAME

    statuses: set[str] = set()
    for raw in values.get("runtimeStatus", []):
        for item in raw.split(","):
            name = item.strip().upper()
            if not name:
                continue
            if name not in STATUS_BY_NAME:
                raise bad_request(
                    "ERR_BAD_REQUEST",
                    f"unknown runtimeStatus {item!r}: one of {', '.join(sorted(STATUS_BY_NAME))}",
                )
            statuses.add(name)

    def when(key: str) -> datetime | None:
        raw = (values.get(key) or [""])[-1]
        if not raw:
            return None
        try:
            at = datetime.fromisoformat(raw.replace("z", "Z"))
        except ValueError:
            raise bad_request("ERR_BAD_REQUEST", f"{key} {raw!r} is not an RFC 3339 time") from None
        if at.tzinfo is None:
            raise bad_request("ERR_BAD_REQUEST", f"{key} {raw!r} has no time zone")
        return at

    return Filter(
        frozenset(statuses),
        (values.get("name") or [""])[-1],
        when("createdFrom"),
        when("createdTo"),
    )


class WorkflowApi:
    def __init__(self, engine: Callable[[], Workflows | None]) -> None:
        self._engine = engine

    def engine(self, component: str) -> Workflows:
        if not component:
            raise bad_request("ERR_WORKFLOW_COMPONENT_MISSING", "no workflow component provided")
        if component != COMPONENT:
            raise bad_request(
                "ERR_WORKFLOW_COMPONENT_NOT_FOUND",
                f"workflow component '{component}' is not supported: use '{COMPONENT}'",
            )
        engine = self._engine()
        if engine is None:
            raise DaprError(
                "ERR_WORKFLOW_COMPONENT_NOT_FOUND",
                'workflows need an actor state store: mark one state store actorStateStore: "true"',
                http_status=500,
            )
        return engine

    @staticmethod
    def _instance(instance_id: str) -> str:
        if not instance_id:
            raise bad_request("ERR_INSTANCE_ID_PROVIDED_MISSING", "no instance ID was provided")
        return instance_id

    async def start(
        self,
        component: str,
        name: str,
        instance_id: str,
        input: str | None,
        start_time: str = "",
    ) -> str:
        engine = self.engine(component)
        if not name:
            raise bad_request("ERR_WORKFLOW_NAME_MISSING", "workflow name is not configured")
        instance_id = instance_id or new_instance_id()
        check_instance_id(instance_id)
        scheduled = None
        if start_time:
            try:
                scheduled = datetime.fromisoformat(start_time.replace("z", "Z"))
            except ValueError:
                raise bad_request(
                    "ERR_START_WORKFLOW", f"{START_TIME_OPTION} {start_time!r} is not RFC 3339"
                ) from None
        async with engine.measure("create_workflow"):
            await engine.start(instance_id, name, input, scheduled_start=scheduled)
        return instance_id

    async def get(self, component: str, instance_id: str) -> dict[str, Any]:
        engine = self.engine(component)
        async with engine.measure("get_workflow"):
            rec = await engine.state(self._instance(instance_id))
            if rec is None:
                raise _not_found(instance_id)
        return view(rec)

    async def terminate(self, component: str, instance_id: str, recursive: bool = True) -> None:
        await self.engine(component).terminate(self._instance(instance_id), None, recursive)

    async def raise_event(
        self, component: str, instance_id: str, event: str, data: str | None
    ) -> None:
        engine = self.engine(component)
        self._instance(instance_id)
        if not event:
            raise bad_request("ERR_WORKFLOW_EVENT_NAME_MISSING", "missing workflow event name")
        async with engine.measure("add_event"):
            await engine.raise_event(instance_id, event, data)

    async def pause(self, component: str, instance_id: str) -> None:
        await self.engine(component).suspend(self._instance(instance_id), None)

    async def resume(self, component: str, instance_id: str) -> None:
        await self.engine(component).resume(self._instance(instance_id), None)

    async def purge(self, component: str, instance_id: str, recursive: bool = True) -> None:
        engine = self.engine(component)
        async with engine.measure("purge_workflow"):
            if await engine.purge(self._instance(instance_id), recursive) == 0:
                raise _not_found(instance_id)

    # --- beyond Dapr -----------------------------------------------------------------------

    async def list_instances(
        self, component: str, where: Filter, page_size: int, token: str
    ) -> dict[str, Any]:
        from tandem.blocks.workflows import listing

        engine = self.engine(component)
        index = await engine.listing()
        try:
            ids, next_token = listing.page(index, where, page_size, token)
        except listing.BadToken as exc:
            raise bad_request("ERR_BAD_REQUEST", str(exc)) from None
        out: dict[str, Any] = {
            "instances": [
                {
                    "instanceID": i,
                    "workflowName": index[i][0],
                    "runtimeStatus": index[i][1],
                    "createdAt": rfc3339(datetime.fromisoformat(index[i][2])),
                }
                for i in ids
                if i in index
            ]
        }
        if next_token:
            out["continuationToken"] = next_token
        return out

    async def history(self, component: str, instance_id: str) -> list[dict[str, Any]]:
        """The committed history, as proto-JSON events (oldest first)."""
        from google.protobuf.json_format import MessageToDict

        events = await self.engine(component).history(self._instance(instance_id))
        return [MessageToDict(e) for e in events]

    async def purge_where(self, component: str, where: Filter) -> dict[str, Any]:
        """Purge every finished instance the filter selects (running ones are skipped)."""
        from tandem.blocks.workflows import listing

        engine = self.engine(component)
        purged: list[str] = []
        for instance_id in listing.matching(await engine.listing(), where):
            rec = await engine.state(instance_id)
            if rec is not None and rec.terminal and await engine.purge(instance_id, True):
                purged.append(instance_id)
        return {"purged": purged, "count": len(purged)}

    async def terminate_where(self, component: str, where: Filter) -> dict[str, Any]:
        """Terminate every unfinished instance the filter selects."""
        from tandem.blocks.workflows import listing

        engine = self.engine(component)
        done: list[str] = []
        for instance_id in listing.matching(await engine.listing(), where):
            rec = await engine.state(instance_id)
            if rec is not None and not rec.terminal:
                await engine.terminate(instance_id, None, True)
                done.append(instance_id)
        return {"terminated": done, "count": len(done)}
