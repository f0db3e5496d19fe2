"""The secrets API: each request checked against the Configuration's scopes, then asked
of its store. Messages name stores and secrets, never a value."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tandem.blocks.errors import DaprError
from tandem.blocks.secrets.store import SecretStore
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.resources.configuration import SecretScope

log = logging.getLogger("tandem.secrets")

T = TypeVar("T")


@dataclass(slots=True)
class SecretsService:
    stores: dict[str, SecretStore] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # name → component type
    scopes: Sequence[SecretScope] = ()
    metrics: RuntimeMetrics = NO_METRICS

    def store(self, name: str) -> SecretStore:
        if not self.stores:
            raise DaprError("ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")
        found = self.stores.get(name)
        if found is None:
            raise DaprError(
                "ERR_SECRET_STORE_NOT_FOUND", f"failed finding secret store with key {name}"
            )
        return found

    def _scope(self, store: str) -> SecretScope | None:
        return next((s for s in self.scopes if s.store_name == store), None)

    def allowed(self, store: str, secret: str) -> bool:
        scope = self._scope(store)
        return scope is None or scope.allows(secret)

    async def _call(self, store: SecretStore, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work) if store.blocking else work()

    async def get(self, store_name: str, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        store = self.store(store_name)
        if not self.allowed(store_name, name):
            raise DaprError(
                "ERR_PERMISSION_DENIED",
                f"access denied by policy to get {name!r} from {store_name!r}",
            )
        start, ok = time.perf_counter(), False
        try:
            found = await self._call(store, lambda: store.get(name, metadata))
            ok = True
            return found
        except Exception as exc:
            raise _get_error(store_name, name, exc) from None
        finally:
            self.metrics.secret(store_name, "get", ok, (time.perf_counter() - start) * 1000)

    async def bulk(self, store_name: str, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        store = self.store(store_name)
        start, ok = time.perf_counter(), False
        try:
            found = await self._call(store, lambda: store.bulk(metadata))
            ok = True
        except Exception as exc:
            raise DaprError(
                "ERR_SECRET_GET",
                f"failed getting secrets from secret store {store_name}: {_reason(exc)}",
            ) from None
        finally:
            self.metrics.secret(store_name, "bulk_get", ok, (time.perf_counter() - start) * 1000)
        # Secrets the scopes deny are left out of a bulk answer, not an error.
        return {name: value for name, value in found.items() if self.allowed(store_name, name)}

    async def swap(self, name: str, new: tuple[SecretStore, str] | None) -> _Closer | None:
        """Serve ``new`` (the store and its type) under ``name``, None: remove it; the
        replaced store, to close once calls in flight are done. The dict is changed in
        place: the resolver of other components' secretKeyRefs shares it."""
        old = self.stores.pop(name, None)
        self.types.pop(name, None)
        if new is not None:
            self.stores[name], self.types[name] = new
        return None if old is None else _Closer(old)

    async def close(self) -> None:
        for name, store in self.stores.items():
            try:
                await asyncio.to_thread(store.close)
            except Exception:
                log.exception("closing secret store %s failed", name)


@dataclass(frozen=True, slots=True)
class _Closer:
    """A replaced store, closed the way :meth:`SecretsService.close` closes one."""

    store: SecretStore

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)


def _reason(exc: Exception) -> str:
    # Store errors are ours or a client library's status line; neither carries a value.
    return str(exc) or type(exc).__name__


def _get_error(store: str, name: str, exc: Exception) -> DaprError:
    return DaprError(
        "ERR_SECRET_GET",
        f"failed getting secret with key {name} from secret store {store}: {_reason(exc)}",
    )
