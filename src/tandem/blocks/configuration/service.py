"""The configuration API: get items, and subscriptions that follow their changes.

A subscription is one watch of the store feeding one queue; its consumer is the gRPC
stream that asked for it or, for HTTP, a task pushing each change to the app. Ending it
(unsubscribe, the stream going away, the runtime closing) stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from tandem.blocks.configuration.store import ConfigurationStore, Items
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics

log = logging.getLogger("tandem.configuration")


@dataclass(frozen=True, slots=True)
class ConfigurationComponent:
    name: str
    type: str
    store: ConfigurationStore


@dataclass(slots=True)
class Subscription:
    id: str
    store: str
    keys: tuple[str, ...]
    queue: asyncio.Queue[Items | None] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def changes(self) -> AsyncIterator[Items]:
        """Each change until the subscription ends."""
        while (items := await self.queue.get()) is not None:
            yield items


@dataclass(slots=True)
class ConfigurationService:
    components: dict[str, ConfigurationComponent] = field(default_factory=dict)
    metrics: RuntimeMetrics = NO_METRICS
    _subs: dict[str, Subscription] = field(default_factory=dict)

    @classmethod
    def from_specs(
        cls, specs: Iterable[ComponentSpec], ctx: ComponentContext
    ) -> ConfigurationService:
        return cls(
            {s.name: cls.build(s, ctx) for s in specs if s.type.startswith("configuration.")}
        )

    @staticmethod
    def build(spec: ComponentSpec, ctx: ComponentContext) -> ConfigurationComponent:
        store = cast(ConfigurationStore, create_component(spec, ctx))
        return ConfigurationComponent(spec.name, spec.type, store)

    async def swap(
        self, name: str, new: ConfigurationComponent | None
    ) -> ConfigurationStore | None:
        """Serve ``new`` under ``name`` (None: remove it); the replaced store, to close.
        Subscriptions to the replaced store end: their clients subscribe again."""
        old = self.components.pop(name, None)
        if new is not None:
            self.components[name] = new
        for sub in [s for s in self._subs.values() if s.store == name]:
            await self._end(sub)
        return None if old is None else old.store

    def component(self, name: str) -> ConfigurationComponent:
        if not self.components:
            raise DaprError(
                "ERR_CONFIGURATION_STORE_NOT_CONFIGURED", "configuration store is not configured"
            )
        found = self.components.get(name)
        if found is None:
            raise DaprError(
                "ERR_CONFIGURATION_STORE_NOT_FOUND", f"configuration store {name} not found"
            )
        return found

    async def get(self, store: str, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        comp = self.component(store)
        start, ok = time.perf_counter(), False
        try:
            items = await comp.store.get(list(keys), metadata)
            ok = True
            return items
        except Exception as exc:
            raise DaprError(
                "ERR_CONFIGURATION_GET",
                f"failed to get {list(keys)} from Configuration store {store}: {exc}",
            ) from None
        finally:
            self.metrics.configuration(store, "get", ok, (time.perf_counter() - start) * 1000)

    async def subscribe(
        self, store: str, keys: Sequence[str], metadata: Mapping[str, str]
    ) -> Subscription:
        """Start watching; returns once changes are seen (the store's first ``{}``)."""
        comp = self.component(store)
        watcher = comp.store.watch(list(keys), metadata)
        start, ok = time.perf_counter(), False
        try:
            await anext(watcher)
            ok = True
        except Exception as exc:
            await watcher.aclose()
            raise DaprError(
                "ERR_CONFIGURATION_SUBSCRIBE",
                f"failed to subscribe {list(keys)} from Configuration store {store}: {exc}",
            ) from None
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            self.metrics.configuration(store, "subscribe", ok, elapsed)
        sub = Subscription(uuid.uuid4().hex, store, tuple(keys))
        sub.tasks.append(asyncio.create_task(self._pump(sub, watcher), name=f"config-{sub.id}"))
        self._subs[sub.id] = sub
        return sub

    async def _pump(self, sub: Subscription, watcher: AsyncGenerator[Items, None]) -> None:
        try:
            async for items in watcher:
                if items:
                    await sub.queue.put(items)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("configuration subscription %s on %s ended: %s", sub.id, sub.store, exc)
        finally:
            sub.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await watcher.aclose()

    async def unsubscribe(self, store: str | None, sub_id: str) -> None:
        sub = self._subs.get(sub_id)
        if sub is None or (store is not None and sub.store != store):
            raise DaprError(
                "ERR_CONFIGURATION_UNSUBSCRIBE", f"subscription with id {sub_id} does not exist"
            )
        await self._end(sub)

    async def end_quietly(self, sub_id: str) -> None:
        """End a subscription if it is still open (a gRPC stream that went away)."""
        sub = self._subs.get(sub_id)
        if sub is not None:
            await self._end(sub)

    async def _end(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)
        current = asyncio.current_task()
        for task in sub.tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in sub.tasks if t is not current), return_exceptions=True)
        sub.queue.put_nowait(None)

    async def close(self) -> None:
        for sub in list(self._subs.values()):
            await self._end(sub)
        for comp in self.components.values():
            try:
                await comp.store.close()
            except Exception:
                log.exception("closing configuration store %s failed", comp.name)
