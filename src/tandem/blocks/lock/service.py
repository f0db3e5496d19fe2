"""The lock API: requests checked as Dapr checks them, resource ids given the store's
``keyPrefix`` (as state keys are), then handed to the store."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from tandem.blocks.errors import DaprError
from tandem.blocks.lock.store import LockStore, UnlockStatus
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.state.keys import KeyScheme

log = logging.getLogger("tandem.lock")


@dataclass(frozen=True, slots=True)
class LockComponent:
    name: str
    type: str
    store: LockStore
    keys: KeyScheme


@dataclass(slots=True)
class LockService:
    components: dict[str, LockComponent] = field(default_factory=dict)

    @classmethod
    def from_specs(cls, specs: Iterable[ComponentSpec], ctx: ComponentContext) -> LockService:
        return cls({s.name: cls.build(s, ctx) for s in specs if s.type.startswith("lock.")})

    @staticmethod
    def build(spec: ComponentSpec, ctx: ComponentContext) -> LockComponent:
        store = cast(LockStore, create_component(spec, ctx))
        keys = KeyScheme.from_metadata(spec.name, spec.metadata, ctx)
        return LockComponent(spec.name, spec.type, store, keys)

    async def swap(self, name: str, new: LockComponent | None) -> LockStore | None:
        """Serve ``new`` under ``name`` (None: remove it); the replaced store, to close.
        A lock held in the old store stays there: its owner's unlock goes to the new one."""
        old = self.components.pop(name, None)
        if new is not None:
            self.components[name] = new
        return None if old is None else old.store

    def component(self, name: str) -> LockComponent:
        if not self.components:
            raise DaprError("ERR_LOCK_STORE_NOT_CONFIGURED", "lock store is not configured")
        found = self.components.get(name)
        if found is None:
            raise DaprError("ERR_LOCK_STORE_NOT_FOUND", f"lock store {name} not found")
        return found

    def _key(self, comp: LockComponent, resource: str, owner: str) -> str:
        if not resource:
            raise DaprError(
                "ERR_MALFORMED_REQUEST", f"ResourceId is empty in lock store {comp.name}"
            )
        if not owner:
            raise DaprError(
                "ERR_MALFORMED_REQUEST", f"LockOwner is empty in lock store {comp.name}"
            )
        return comp.keys.stored(resource)

    async def try_lock(self, store: str, resource: str, owner: str, expiry_seconds: int) -> bool:
        comp = self.component(store)
        key = self._key(comp, resource, owner)
        if expiry_seconds <= 0:
            raise DaprError(
                "ERR_MALFORMED_REQUEST",
                f"ExpiryInSeconds is not positive in lock store {store}",
            )
        try:
            return await comp.store.try_lock(key, owner, expiry_seconds)
        except Exception as exc:
            raise DaprError(
                "ERR_TRY_LOCK", f"failed to try acquiring lock: {exc or type(exc).__name__}"
            ) from None

    async def unlock(self, store: str, resource: str, owner: str) -> UnlockStatus:
        comp = self.component(store)
        key = self._key(comp, resource, owner)
        try:
            return await comp.store.unlock(key, owner)
        except Exception as exc:
            raise DaprError(
                "ERR_UNLOCK", f"failed to release lock: {exc or type(exc).__name__}"
            ) from None

    async def close(self) -> None:
        for comp in self.components.values():
            try:
                await comp.store.close()
            except Exception:
                log.exception("closing lock store %s failed", comp.name)
