"""Hot reload, runtime side: the app's ``--resources-path`` (and ``--config``) are watched;
state stores are added, replaced (their YAML or their Resiliency policy changed) or removed
while the runtime serves, as Dapr's HotReload does.

A change is loaded and validated in full first: an invalid edit changes nothing and is
logged by file, field and reason. A replaced or removed store is closed only after a grace
period, so calls already using it finish. Each applied configuration gets a version (a
hash of the files' content), written next to the runtime's sockets for ``tandem list``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.blocks.metadata import ComponentInfo, MetadataService
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
    from tandem.xds.translate import http_endpoints, resiliency

    lines = [w for r in loaded.resiliencies for w in resiliency.warnings(r)]
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
    version_dir: Path | None = None
    poll_seconds: float = POLL_SECONDS
    # Component → the spec its factory gets, secretKeyRef resolved (secrets/resolve.py).
    resolve: Callable[[Component], ComponentSpec] = spec_of
    _seen: _Signature | None = None
    _stores: dict[str, _Store] = field(default_factory=dict)
    _others: dict[str, ComponentSpec] = field(default_factory=dict)
    _subscriptions: tuple[Any, ...] = ()
    _invocation: tuple[Any, ...] = ()
    _closing: dict[asyncio.Task[None], StateComponent] = field(default_factory=dict)

    def _watched(self) -> list[Path]:
        return [*self.paths, *([self.config] if self.config is not None else [])]

    def start(self, loaded: ResourceSet) -> None:
        """Remember what the runtime started with; the first check compares against it."""
        self._seen = signature(self._watched())
        specs = self._specs(loaded)
        self._stores = self._desired(loaded, specs)
        self._others = self._not_reloaded(loaded, specs)
        self._subscriptions = loaded.subscriptions
        self._invocation = (loaded.resiliencies, loaded.http_endpoints)
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
        self._apply(loaded, specs)
        await asyncio.to_thread(self._write_version)

    def _load(self) -> tuple[ResourceSet, dict[str, ComponentSpec]]:
        if self.config is not None:
            load_configuration(self.config)  # validated, as at start
        loaded = load_resources(list(self.paths), app_id=self.app_id, namespace=self.namespace)
        # Here, on the worker thread: resolving a secretKeyRef may ask a server; one that no
        # longer resolves is a ResourceError like any invalid edit.
        return loaded, self._specs(loaded)

    def _specs(self, loaded: ResourceSet) -> dict[str, ComponentSpec]:
        return {c.name: self.resolve(c) for c in loaded.components}

    def _desired(self, loaded: ResourceSet, specs: dict[str, ComponentSpec]) -> dict[str, _Store]:
        return {
            c.name: _Store(
                specs[c.name],
                component_policy(loaded.resiliencies, c.name, "outbound", "Statestore"),
            )
            for c in loaded.components
            if c.type.startswith("state.")
        }

    def _not_reloaded(
        self, loaded: ResourceSet, specs: dict[str, ComponentSpec]
    ) -> dict[str, ComponentSpec]:
        return {c.name: specs[c.name] for c in loaded.components if not c.type.startswith("state.")}

    def _warn_not_reloaded(self, loaded: ResourceSet, specs: dict[str, ComponentSpec]) -> None:
        others = self._not_reloaded(loaded, specs)
        for name in sorted(set(others) | set(self._others)):
            if others.get(name) != self._others.get(name):
                log.warning(
                    "component %s changed: only state stores are reloaded yet; "
                    "restart the app for this change",
                    name,
                )
        self._others = others
        if loaded.subscriptions != self._subscriptions:
            log.warning(
                "declarative subscriptions changed: they are not reloaded yet; "
                "restart the app for this change",
                extra={"files": sorted({s.source for s in loaded.subscriptions})},
            )
            self._subscriptions = loaded.subscriptions

    def _warn_invocation(self, loaded: ResourceSet) -> None:
        """The control plane applies these to Envoy; what Envoy cannot do is said here,
        in the app's log, as at start."""
        invocation = (loaded.resiliencies, loaded.http_endpoints)
        if invocation == self._invocation:
            return
        self._invocation = invocation
        for line in invocation_warnings(loaded):
            log.warning("%s", line)

    def _apply(self, loaded: ResourceSet, specs: dict[str, ComponentSpec]) -> None:
        self._warn_not_reloaded(loaded, specs)
        self._warn_invocation(loaded)
        desired = self._desired(loaded, specs)
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
            if new is None:
                self._stores.pop(name, None)
            else:
                self._stores[name] = new
            if previous is not None:
                self._close_later(previous)
            what = "removed" if new is None else "added" if old is None else "replaced"
            changed.append((name, what))
        if changed:
            self._publish_components()
            log.info(
                "components reloaded",
                extra={"changes": [f"{name} {what}" for name, what in changed]},
            )

    def _publish_components(self) -> None:
        others = [c for c in self.metadata.components if not c.type.startswith("state.")]
        stores = [
            ComponentInfo(
                name,
                comp.type,
                self._stores[name].spec.version,
                tuple(sorted(f.value for f in features_of(comp.store))),
            )
            for name, comp in self.state.components.items()
        ]
        self.metadata.components = [*stores, *others]

    def _close_later(self, comp: StateComponent) -> None:
        async def close() -> None:
            await asyncio.sleep(CLOSE_GRACE_SECONDS)
            try:
                await comp.store.close()
            except Exception:
                log.exception("closing the replaced state store %s failed", comp.name)

        task = asyncio.create_task(close(), name=f"close-{comp.name}")
        self._closing[task] = comp
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
        """Close the replaced stores still in their grace period now."""
        for task, comp in list(self._closing.items()):
            task.cancel()
            try:
                await comp.store.close()
            except Exception:
                log.exception("closing the replaced state store %s failed", comp.name)
