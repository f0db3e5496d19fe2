"""Actor state in the component marked ``actorStateStore: "true"``, under Dapr's key scheme
``<appId>||<actorType>||<actorId>||<key>``, saved transactionally."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tandem.blocks.errors import DaprError
from tandem.blocks.state.service import StateComponent, parse_ttl
from tandem.blocks.state.store import (
    DeleteRequest,
    Feature,
    GetRequest,
    SetRequest,
    TransactionOperation,
)

SEPARATOR = "||"


@dataclass(frozen=True, slots=True)
class ActorStateOp:
    operation: str  # "upsert" | "delete"
    key: str
    value: bytes = b""
    metadata: Mapping[str, str] | None = None


class ActorState:
    """``components`` is looked up on every call: hot reload may replace the store."""

    def __init__(self, app_id: str, components: Mapping[str, StateComponent], name: str) -> None:
        component = components[name]
        missing = {Feature.ETAG, Feature.TRANSACTIONAL} - component.store.features
        if missing:
            raise ValueError(
                f"component {name} is marked actorStateStore but does not support "
                + " and ".join(sorted(m.value for m in missing))
            )
        self._app_id = app_id
        self._components = components
        self._name = name

    @property
    def component(self) -> StateComponent:
        found = self._components.get(self._name)
        if found is None:
            raise DaprError(
                "ERR_ACTOR_RUNTIME_NOT_FOUND", f"the actor state store {self._name} was removed"
            )
        return found

    def key(self, actor_type: str, actor_id: str, key: str) -> str:
        return SEPARATOR.join((self._app_id, actor_type, actor_id, key))

    async def get(self, actor_type: str, actor_id: str, key: str) -> bytes | None:
        try:
            got = await self.component.store.get(GetRequest(self.key(actor_type, actor_id, key)))
        except Exception as exc:
            raise DaprError("ERR_ACTOR_STATE_GET", f"error getting actor state: {exc}") from exc
        return got.data

    async def transact(self, actor_type: str, actor_id: str, ops: Sequence[ActorStateOp]) -> None:
        prepared: list[TransactionOperation] = []
        for op in ops:
            stored = self.key(actor_type, actor_id, op.key)
            metadata = dict(op.metadata or {})
            if op.operation == "upsert":
                try:
                    ttl = parse_ttl(metadata)
                except ValueError as exc:
                    raise DaprError(
                        "ERR_ACTOR_STATE_TRANSACTION_SAVE", str(exc), http_status=400
                    ) from exc
                prepared.append(SetRequest(stored, op.value, metadata=metadata, ttl=ttl))
            elif op.operation == "delete":
                prepared.append(DeleteRequest(stored, metadata=metadata))
            else:
                raise DaprError(
                    "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                    f"operation type {op.operation!r} not supported",
                    http_status=400,
                )
        if not prepared:
            return
        try:
            await self.component.store.transact(prepared, {})
        except Exception as exc:
            raise DaprError(
                "ERR_ACTOR_STATE_TRANSACTION_SAVE", f"error saving actor state: {exc}"
            ) from exc


def pick_actor_store(
    components: Mapping[str, StateComponent], metadata: Mapping[str, Mapping[str, str]]
) -> StateComponent | None:
    """The one state component marked ``actorStateStore: "true"``; more than one is refused."""
    marked = [
        components[name]
        for name, md in metadata.items()
        if name in components and str(md.get("actorStateStore", "")).lower() == "true"
    ]
    if len(marked) > 1:
        names = ", ".join(sorted(c.name for c in marked))
        raise ValueError(f"more than one state store is marked actorStateStore: {names}")
    return marked[0] if marked else None
