"""Hot reload, runtime side: the app's ``--resources-path`` (and ``--config``) are watched;
state stores and pubsubs are added, replaced (their YAML or their Resiliency policy
changed) or removed while the runtime serves, as Dapr's HotReload does, and declarative
subscriptions follow their files.

A change is loaded and validated in full first: an invalid edit changes nothing and is
logged by file, field and reason. A replaced or removed component is closed only after a
grace period, so calls already using it finish; the subscriptions on a replaced pubsub are
ended (deliveries in flight finish) and started again on the new one, and its streaming
subscriptions are closed so their clients subscribe again. Each applied configuration gets a version (a
hash of the files' content), written next to the runtime's sockets for ``tandem list``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from tandem.blocks.metadata import ComponentInfo, MetadataService
from tandem.blocks.pubsub.app_subscriptions import AppSubscriptions
from tandem.blocks.pubsub.broker import PubSub
from tandem.blocks.pubsub.service import PubSubService, component_of
from tandem.blocks.pubsub.streaming import StreamingSubscriptions
from tandem.blocks.pubsub.subscriptions import from_declarative
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.state.keys import KeyScheme
from tandem.blocks.state.service import StateComponent, StateService, features_of
from tandem.blocks.state.store import StateStore
from tandem.resources import Component, ResourceError, ResourceSet
from tandem.resources.loader import load_configuration, load_resources, signature
from tandem.resources.resiliency import Policy, component_policy

log = logging.getLogger("tandem.runtime")

POLL_SECONDS = 0.25
# A replaced store stays open this long for the calls that already hold it.
CLOSE_GRACE_SECONDS = 10.0
VERSION_FILE = "config-version.json"

_Signature = tuple[tuple[str, int, int], ...]


def spec_of(component: Component) -> ComponentSpec:
    return ComponentSpec(
        name=component.name,
        type=component.type,
        version=component.version,
        metadata=component.plain_metadata(),
    )


def invocation_warnings(loaded: ResourceSet) -> list[str]:
    """What of the Resiliency and HTTPEndpoint resources Envoy cannot apply."""
    if not (
        loaded.resiliencies
        or loaded.http_routes
        or loaded.traffic_policies
        or loaded.http_endpoints
    ):
        return []  # the translators (Envoy's config protos) load only to check some
    from tandem.xds.translate import http_endpoints, resiliency, traffic

    lines = [w for r in loaded.resiliencies for w in resiliency.warnings(r)]
    lines += traffic.warnings(loaded.http_routes, loaded.traffic_policies)
    return lines + [w for e in loaded.http_endpoints for w in http_endpoints.warnings(e)]


def config_version(paths: Sequence[Path]) -> str:
    """A short hash of every resource file's name and content."""
    digest = hashlib.sha256()
    for file, _, _ in signature(paths):
        digest.update(file.encode())
        try:
            digest.update(Path(file).read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class _Store:
    spec: ComponentSpec
    policy: Policy


# The blocks whose components are reloaded, with the Resiliency kind of their policies.
_RELOADED = {"state": "Statestore", "pubsub": "Pubsub"}


def _block(component: Component | ComponentSpec | ComponentInfo) -> str:
    return component.type.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class PubSubReload:
    """What the runtime's pub/sub side gives the reloader."""

    service: PubSubService
    wrap: Callable[[Sequence[Any]], Callable[[str, PubSub], PubSub]]
    streams: StreamingSubscriptions | None = None
    # The app's subscriptions, once the app channel is open (None before and without an app).
    app: Callable[[], AppSubscriptions | None] = lambda: None


@dataclass(frozen=True, slots=True)
class SwapReload:
    """A block whose components are replaced in place: the new one is built from its spec
    (and the Resiliency in force), swapped in, and the replaced one closed after a grace
    period. ``swap`` answers what to close."""

    block: str
    build: Callable[[ComponentSpec, Sequence[Any]], Any]
    swap: Callable[[str, Any | None], Awaitable[Any | None]]


@dataclass(slots=True)
class RuntimeReloader:
    paths: tuple[Path, ...]
    config: Path | None
    app_id: str
    namespace: str | None  # None: NAMESPACE unset, every namespace loads
    ctx: ComponentContext
    state: StateService
    metadata: MetadataService
    wrap: Callable[[Sequence[Any]], Callable[[str, StateStore], StateStore]]
    pubsub: PubSubReload | None = None
    version_dir: Path | None = None
    poll_seconds: float = POLL_SECONDS
    # Component → the spec its factory gets, secretKeyRef resolved (secrets/resolve.py).
    resolve: Callable[[Component], ComponentSpec] = spec_of
    swaps: tuple[SwapReload, ...] = ()
    # Told each valid reload of ``config`` (the Configuration), after the resources apply.
    on_config: Callable[[Any], None] | None = None
    _config_loaded: Any = None
    _swapped: dict[str, _Store] = field(default_factory=dict)  # the swap blocks', by name
    _seen: _Signature | None = None
    _stores: dict[str, _Store] = field(default_factory=dict)
    _pubsubs: dict[str, _Store] = field(default_factory=dict)
    _others: dict[str, ComponentSpec] = field(default_factory=dict)
    _subscriptions: tuple[Any, ...] = ()
    _resiliencies: tuple[Any, ...] = ()
    _invocation: tuple[Any, ...] = ()
    _closing: dict[asyncio.Task[None], tuple[str, Any]] = field(default_factory=dict)

    def _watched(self) -> list[Path]:
        return [*self.paths, *([self.config] if self.config is not None else [])]

    def start(self, loaded: ResourceSet) -> None:
        """Remember what the runtime started with; the first check compares against it."""
        self._seen = signature(self._watched())
        specs = self._specs(loaded)
        self._stores = self._desired(loaded, specs, "state")
        self._pubsubs = self._desired(loaded, specs, "pubsub")
        self._swapped = self._swap_desired(loaded, specs)
        self._others = self._not_reloaded(loaded, specs)
        self._subscriptions = loaded.subscriptions
        self._resiliencies = loaded.resiliencies
        self._invocation = (
            loaded.resiliencies,
            loaded.http_endpoints,
            loaded.http_routes,
            loaded.traffic_policies,
        )
        self._write_version()

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("hot reload failed")
            await asyncio.sleep(self.poll_seconds)

    async def check(self) -> None:
        sig = await asyncio.to_thread(signature, self._watched())
        if sig == self._seen:
            return
        self._seen = sig
        try:
            loaded, specs = await asyncio.to_thread(self._load)
        except ResourceError as exc:
            log.warning("resources not reloaded, the last good ones stay: %s", exc)
            return
        await self._apply(loaded, specs)
        if self.on_config is not None and self.config is not None:
            self.on_config(self._config_loaded)
        await asyncio.to_thread(self._write_version)

    def _load(self) -> tuple[ResourceSet, dict[str, ComponentSpec]]:
        if self.config is not None:
            self._config_loaded = load_configuration(self.config)  # validated, as at start
        loaded = load_resources(list(self.paths), app_id=self.app_id, namespace=self.namespace)
        # Here, on the worker thread: resolving a secretKeyRef may ask a server; one that no
        # longer resolves is a ResourceError like any invalid edit.
        return loaded, self._specs(loaded)

    def _specs(self, loaded: ResourceSet) -> dict[str, ComponentSpec]:
        return {c.name: self.resolve(c) for c in loaded.components}

    def _desired(
        self, loaded: ResourceSet, specs: dict[str, ComponentSpec], block: str
    ) -> dict[str, _Store]:
        kind = _RELOADED[block]
        return {
            c.name: _Store(
                specs[c.name], component_policy(loaded.resiliencies, c.name, "outbound", kind)
            )
            for c in loaded.components
            if _block(c) == block
        }

    def _reloaded_blocks(self) -> set[str]:
        return {*_RELOADED, *(w.block for w in self.swaps)}

    def _swap_desired(
        self, loaded: ResourceSet, specs: dict[str, ComponentSpec]
    ) -> dict[str, _Store]:
        blocks = {w.block for w in self.swaps}
        return {
            c.name: _Store(specs[c.name], component_policy(loaded.resiliencies, c.name, "outbound"))
            for c in loaded.components
            if _block(c) in blocks
        }

    def _not_reloaded(
        self, loaded: ResourceSet, specs: dict[str, ComponentSpec]
    ) -> dict[str, ComponentSpec]:
        reloaded = self._reloaded_blocks()
        return {c.name: specs[c.name] for c in loaded.components if _block(c) not in reloaded}

    def _warn_not_reloaded(self, loaded: ResourceSet, specs: dict[str, ComponentSpec]) -> None:
        others = self._not_reloaded(loaded, specs)
        blocks = ", ".join(sorted(self._reloaded_blocks()))
        for name in sorted(set(others) | set(self._others)):
            if others.get(name) != self._others.get(name):
                log.warning(
                    "component %s changed: only components of these blocks are reloaded: %s; "
                    "restart the app for this change",
                    name,
                    blocks,
                )
        self._others = others

    def _warn_invocation(self, loaded: ResourceSet) -> None:
        """The control plane applies these to Envoy; what Envoy cannot do is said here,
        in the app's log, as at start."""
        invocation = (
            loaded.resiliencies,
            loaded.http_endpoints,
            loaded.http_routes,
            loaded.traffic_policies,
        )
        if invocation == self._invocation:
            return
        self._invocation = invocation
        for line in invocation_warnings(loaded):
            log.warning("%s", line)

    async def _apply(self, loaded: ResourceSet, specs: dict[str, ComponentSpec]) -> None:
        self._warn_not_reloaded(loaded, specs)
        self._warn_invocation(loaded)
        changed = self._apply_stores(loaded, specs)
        changed += await self._apply_swaps(loaded, specs)
        renewed = self._apply_pubsubs(loaded, specs)
        changed += renewed
        await self._apply_subscriptions(loaded, frozenset(name for name, _ in renewed))
        if changed:
            self._publish_components()
            log.info(
                "components reloaded",
                extra={"changes": [f"{name} {what}" for name, what in changed]},
            )

    def _apply_stores(
        self, loaded: ResourceSet, specs: dict[str, ComponentSpec]
    ) -> list[tuple[str, str]]:
        desired = self._desired(loaded, specs, "state")
        wrap = self.wrap(loaded.resiliencies)
        changed = []
        for name in sorted(set(self._stores) | set(desired)):
            old, new = self._stores.get(name), desired.get(name)
            if old == new:
                continue
            replacement = None
            if new is not None:
                try:
                    store = wrap(name, create_component(new.spec, self.ctx))
                    keys = KeyScheme.from_metadata(name, new.spec.metadata, self.ctx)
                except Exception as exc:
                    # The other changes still apply; this store keeps its last good version.
                    log.error("state store %s not reloaded: %s", name, exc)
                    continue
                replacement = StateComponent(name, store, keys, new.spec.type)
            previous = self.state.set_component(name, replacement)
            self._remember(self._stores, name, new)
            if previous is not None:
                self._close_later(name, previous.store)
            changed.append((name, _what(old, new)))
        return changed

    async def _apply_swaps(
        self, loaded: ResourceSet, specs: dict[str, ComponentSpec]
    ) -> list[tuple[str, str]]:
        by_block = {w.block: w for w in self.swaps}
        desired = self._swap_desired(loaded, specs)
        changed = []
        for name in sorted(set(self._swapped) | set(desired)):
            old, new = self._swapped.get(name), desired.get(name)
            if old == new:
                continue
            how = by_block[(new or old).spec.type.split(".", 1)[0]]  # type: ignore[union-attr]
            replacement = None
            if new is not None:
                try:
                    replacement = how.build(new.spec, loaded.resiliencies)
                except Exception as exc:
                    log.error("component %s not reloaded: %s", name, exc)
                    continue
            previous = await how.swap(name, replacement)
            self._remember(self._swapped, name, new)
            if previous is not None:
                self._close_later(name, previous)
            changed.append((name, _what(old, new)))
        return changed

    def _apply_pubsubs(
        self, loaded: ResourceSet, specs: dict[str, ComponentSpec]
    ) -> list[tuple[str, str]]:
        if self.pubsub is None:
            return []
        desired = self._desired(loaded, specs, "pubsub")
        wrap = self.pubsub.wrap(loaded.resiliencies)
        changed = []
        for name in sorted(set(self._pubsubs) | set(desired)):
            old, new = self._pubsubs.get(name), desired.get(name)
            if old == new:
                continue
            replacement = None
            if new is not None:
                try:
                    broker = wrap(name, cast(PubSub, create_component(new.spec, self.ctx)))
                except Exception as exc:
                    log.error("pubsub %s not reloaded: %s", name, exc)
                    continue
                replacement = component_of(new.spec, broker)
            previous = self.pubsub.service.set_component(name, replacement)
            self._remember(self._pubsubs, name, new)
            if previous is not None:
                self._close_later(name, previous.broker)
            changed.append((name, _what(old, new)))
        return changed

    async def _apply_subscriptions(self, loaded: ResourceSet, renewed: frozenset[str]) -> None:
        if self.pubsub is None:
            return
        policies_changed = loaded.resiliencies != self._resiliencies
        subs_changed = loaded.subscriptions != self._subscriptions
        self._resiliencies, self._subscriptions = loaded.resiliencies, loaded.subscriptions
        if not (renewed or policies_changed or subs_changed):
            return
        if renewed and self.pubsub.streams is not None:
            await self.pubsub.streams.end(renewed)
        app = self.pubsub.app()
        if app is None:
            if subs_changed:
                log.info("declarative subscriptions changed; they start with the app")
            return
        declarative = [from_declarative(s) for s in loaded.subscriptions]
        await app.reload(declarative, renewed, loaded.resiliencies)
        if subs_changed:
            log.info(
                "subscriptions reloaded",
                extra={"files": sorted({s.source for s in loaded.subscriptions})},
            )

    @staticmethod
    def _remember(table: dict[str, _Store], name: str, new: _Store | None) -> None:
        if new is None:
            table.pop(name, None)
        else:
            table[name] = new

    def _publish_components(self) -> None:
        blocks = self._reloaded_blocks()
        reloaded = [c for c in self.metadata.components if _block(c) not in blocks]
        swapped = [
            ComponentInfo(name, store.spec.type, store.spec.version, ())
            for name, store in sorted(self._swapped.items())
        ]
        stores = [
            ComponentInfo(
                name,
                comp.type,
                self._stores[name].spec.version,
                tuple(sorted(f.value for f in features_of(comp.store))),
            )
            for name, comp in self.state.components.items()
        ]
        pubsubs = (
            [
                ComponentInfo(
                    name, ps.type, ps.version, tuple(sorted(f.value for f in ps.broker.features))
                )
                for name, ps in self.pubsub.service.components.items()
            ]
            if self.pubsub is not None
            else []
        )
        self.metadata.components = [*stores, *pubsubs, *swapped, *reloaded]

    def _close_later(self, name: str, component: Any) -> None:
        async def close() -> None:
            await asyncio.sleep(CLOSE_GRACE_SECONDS)
            try:
                await component.close()
            except Exception:
                log.exception("closing the replaced component %s failed", name)

        task = asyncio.create_task(close(), name=f"close-{name}")
        self._closing[task] = (name, component)
        task.add_done_callback(lambda t: self._closing.pop(t, None))

    def _write_version(self) -> None:
        if self.version_dir is None:
            return
        version = config_version(self._watched())
        path = self.version_dir / VERSION_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": version}))
        tmp.replace(path)

    async def close(self) -> None:
        """Close the replaced components still in their grace period now."""
        for task, (name, component) in list(self._closing.items()):
            task.cancel()
            try:
                await component.close()
            except Exception:
                log.exception("closing the replaced component %s failed", name)


def _what(old: _Store | None, new: _Store | None) -> str:
    return "removed" if new is None else "added" if old is None else "replaced"
