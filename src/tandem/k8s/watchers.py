"""The control plane's watches in a cluster, feeding the registry (I/O edge).

- Pods labelled ``dapr.io/sidecar-injected=true`` (every namespace) become the registry's
  peers (:func:`tandem.k8s.mesh_sources.peers_from_pods`), so each replica routes to every
  sidecar, whichever replica it streams from.
- The kinds that shape invocations (Resiliency, HTTPEndpoint, middleware Components;
  HTTPRoute and BackendTrafficPolicy when their CRDs are installed) become each local
  sidecar's resource files, namespace by namespace, through ``Sidecar.with_resource_files``:
  the path file-based hot reload takes (:mod:`tandem.xds.reload`). An invalid object changes
  nothing and is logged once, by object, field and reason.
- A sidecar's ``dapr.io/config`` Configuration (:mod:`tandem.k8s.configurations`), applied
  when it joins (:meth:`Watches.prepare`: a missing one refuses its stream) and followed
  as it is edited, as the runtime follows its copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from tandem.k8s.configurations import inputs, joining, resolve
from tandem.k8s.inject import INJECTED_LABEL
from tandem.k8s.mesh_sources import peers_from_pods
from tandem.k8s.reflector import Reflector, list_watch
from tandem.resources import ResourceError
from tandem.xds.ir import Sidecar
from tandem.xds.registry import Registry

log = logging.getLogger("tandem.k8s.watchers")

# (group, version, kind, plural) of the objects watched: those that shape invocations
# (Envoy) and those the runtimes load (tandem.k8s.resource_service).
WATCHED_RESOURCES = (
    ("dapr.io", "v1alpha1", "Component", "components"),
    ("dapr.io", "v1alpha1", "Configuration", "configurations"),
    ("dapr.io", "v2alpha1", "Subscription", "subscriptions"),
    ("dapr.io", "v1alpha1", "Resiliency", "resiliencies"),
    ("dapr.io", "v1alpha1", "HTTPEndpoint", "httpendpoints"),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    ("gateway.envoyproxy.io", "v1alpha1", "BackendTrafficPolicy", "backendtrafficpolicies"),
)


class Broadcast:
    """Wakes every waiter at each change: wait on :meth:`current`'s event, taken before
    reading the state it guards."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


class Watches:
    """The local copies of the watched kinds, and the signal that one changed."""

    def __init__(self) -> None:
        self.pods = Reflector("Pod")
        self.resources = {kind: Reflector(kind) for _, _, kind, _ in WATCHED_RESOURCES}
        self.updates = Broadcast()

    def objects(self) -> list[dict[str, Any]]:
        return [o for r in self.resources.values() for o in r.objects.values()]

    def prepare(self, sidecar: Sidecar) -> Sidecar:
        """A joining sidecar with its namespace's objects and its Configuration, so its
        first snapshot already has them. Raises ValueError (its stream is refused)."""
        listed = self.resources["Configuration"].resource_version is not None
        if sidecar.configuration is not None and not listed:
            raise ValueError(
                "the control plane has not listed the cluster's Configurations yet; "
                "the sidecar's Envoy retries"
            )
        return joining(sidecar, self.objects())


def resource_class(group: str, version: str, kind: str, plural: str) -> Any:
    from lightkube.generic_resource import create_namespaced_resource

    return create_namespaced_resource(group, version, kind, plural)


class ClusterFeed:
    """Applies the reflectors' copies to the registry; :meth:`sync` is cheap when idle."""

    def __init__(self, registry: Registry, watches: Watches | None = None) -> None:
        self.registry = registry
        self.watches = watches if watches is not None else Watches()
        self.pods = self.watches.pods
        self.resources = self.watches.resources
        self._peers_generation = -1
        self._refused: dict[str, str] = {}  # node -> the last error logged
        # node -> the inputs last applied (configurations.inputs): idle rounds parse nothing.
        self._applied: dict[str, object] = {}

    def sync(self) -> None:
        if self.pods.generation != self._peers_generation:
            self._peers_generation = self.pods.generation
            self.registry.set_peers(peers_from_pods(self.pods.objects.values()))
        objects = self.watches.objects()
        live = {s.node_id for s in self.registry.local_sidecars()}
        for node in set(self._applied) - live:
            del self._applied[node]
        for sidecar in self.registry.local_sidecars():
            seen = inputs(sidecar, objects)
            if self._applied.get(sidecar.node_id) == seen:
                continue
            self._applied[sidecar.node_id] = seen
            try:
                updated = resolve(sidecar, objects)
            except ResourceError as exc:
                if self._refused.get(sidecar.node_id) != str(exc):
                    self._refused[sidecar.node_id] = str(exc)
                    log.warning(
                        "resources or Configuration not reloaded, the last good ones stay: %s",
                        exc,
                        extra={"node": sidecar.node_id, "app_id": sidecar.app_id},
                    )
                continue
            self._refused.pop(sidecar.node_id, None)
            if updated != sidecar:
                self.registry.reload_sidecar(updated)


async def run_watchers(
    client: Any, registry: Registry, watches: Watches | None = None, poll_seconds: float = 0.25
) -> None:
    """Watch until cancelled. A sidecar that joins gets its namespace's objects at the next
    poll (as file-based hot reload does)."""
    from lightkube.resources.core_v1 import Pod

    feed = ClusterFeed(registry, watches)
    changed = asyncio.Event()

    def notify() -> None:
        changed.set()
        feed.watches.updates.notify()

    tasks = [
        asyncio.create_task(
            list_watch(client, Pod, feed.pods, notify, labels={INJECTED_LABEL: "true"}),
            name="watch-pods",
        )
    ]
    for group, version, kind, plural in WATCHED_RESOURCES:
        tasks.append(
            asyncio.create_task(
                list_watch(
                    client,
                    resource_class(group, version, kind, plural),
                    feed.resources[kind],
                    notify,
                ),
                name=f"watch-{plural}",
            )
        )
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll_seconds)
            changed.clear()
            try:
                feed.sync()
            except Exception:
                log.exception("applying the cluster's objects failed")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
