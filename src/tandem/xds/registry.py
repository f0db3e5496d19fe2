"""Live sidecars, learned from ADS streams, and the snapshots computed from them.

A sidecar exists while its Envoy's ADS stream is open: it is added from the node metadata of
the stream's first request and dropped when the stream ends. Every change recomputes every
node's snapshot (translate → cache), so when app B joins, app A's Envoy gets B's route and
cluster, and when B leaves they go away. Unchanged snapshots keep their version and are not
resent (see :mod:`tandem.xds.cache`).

A sidecar joins only once :class:`tandem.xds.identity.Identities` has admitted it (checked
its enrolment credential and signed its CSR); otherwise its stream is refused with the
reason. The node metadata itself is never logged: it carries the credential and tokens.

One stream per node: while a node id has a live stream, a second stream presenting the
same node id (a replayed enrolment, say) is refused, so it can neither replace nor, when it
ends, remove the real sidecar. A reconnect after the old stream has ended is admitted.

In a cluster, sidecars connected to another control-plane replica are *peers*: known from
their pods (:mod:`tandem.k8s.watchers`), routed to like local ones, given no snapshot here.

After a control-plane restart the registry may start *holding*: it admits reconnecting
streams but computes no snapshot until the sidecars it awaits (by ``tandem run`` pid) are
back or :meth:`release` is called, so no Envoy is told that its peers are gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from tandem.xds.cache import Snapshot, SnapshotCache
from tandem.xds.identity import Identities
from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import Resources, translate

log = logging.getLogger("tandem.xds.registry")

Translator = Callable[[Sidecar, Mesh], Resources]


@dataclass(frozen=True, slots=True)
class _Entry:
    stream_id: int
    sidecar: Sidecar


class Registry:
    """Implements the ADS server's stream callbacks; owns the mesh and feeds the cache."""

    def __init__(
        self,
        cache: SnapshotCache,
        identities: Identities,
        translator: Translator = translate,
        on_admitted: Callable[[], None] = lambda: None,
        awaited_pids: frozenset[int] = frozenset(),
        prepare: Callable[[Sidecar], Sidecar] | None = None,
    ) -> None:
        self._cache = cache
        # What a joining sidecar gets before its first snapshot, from elsewhere than its
        # metadata (a cluster's objects, tandem.k8s.watchers); raises ValueError to refuse.
        self._prepare = prepare
        self._identities = identities
        self._translate = translator
        self._on_admitted = on_admitted
        self._entries: dict[str, _Entry] = {}
        # Sidecars of other replicas, by node id (Kubernetes); a local stream wins.
        self._peers: dict[str, Sidecar] = {}
        self.generation = 0
        self._awaited = set(awaited_pids)
        self.holding = bool(awaited_pids)
        self._back = asyncio.Event()
        # When the last sidecar left (monotonic; None while one is connected or before any
        # came): the control plane's idle exit counts from here.
        self.last_left: float | None = None

    async def all_awaited_back(self) -> None:
        """Returns once every awaited sidecar has reconnected."""
        if self._awaited:
            await self._back.wait()

    def release(self) -> None:
        """Stop holding: compute and publish every snapshot."""
        if not self.holding:
            return
        self.holding = False
        log.info(
            "registry rebuilt",
            extra={"sidecars": len(self._entries), "missing_pids": sorted(self._awaited)},
        )
        self._awaited.clear()
        self._recompute()

    def mesh(self) -> Mesh:
        local = [entry.sidecar for entry in self._entries.values()]
        peers = [p for node, p in self._peers.items() if node not in self._entries]
        return Mesh.of([*local, *peers], self._identities.security())

    def set_peers(self, peers: Mapping[str, Sidecar]) -> None:
        """Replace the sidecars known from the cluster (every replica's); recompute if the
        mesh changed."""
        peers = dict(peers)
        if peers == self._peers:
            return
        self._peers = peers
        if not self.holding:
            self._recompute()

    def local_sidecars(self) -> list[Sidecar]:
        """The sidecars whose Envoy streams from this control plane."""
        return [entry.sidecar for entry in self._entries.values()]

    def on_stream_open(self, stream_id: int, node: base_pb2.Node) -> None:
        """Raises ValueError (bad metadata) or PermissionError (identity refused)."""
        metadata = json_format.MessageToDict(node.metadata)
        sidecar = Sidecar.from_node_metadata(node.id, metadata)
        live = self._entries.get(node.id)
        if live is not None:
            # Checked before admission, so the live sidecar's certificate is untouched. An
            # Envoy reconnecting before its old stream is seen to end is refused once and
            # retries after its back-off.
            raise PermissionError(
                f"node {node.id!r} already has a live stream; one stream per sidecar"
            )
        if self._prepare is not None:
            sidecar = self._prepare(sidecar)
        self._identities.admit(sidecar, metadata)
        self._on_admitted()
        self._entries[node.id] = _Entry(stream_id, sidecar)
        self.last_left = None
        log.info("sidecar joined", extra={"node": node.id, "app_id": sidecar.app_id})
        if sidecar.pid is not None and sidecar.pid in self._awaited:
            self._awaited.discard(sidecar.pid)
            if not self._awaited:
                self._back.set()
        if not self.holding:
            self._recompute()

    def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        entry = self._entries.get(node_id)
        if entry is None or entry.stream_id != stream_id:
            return
        del self._entries[node_id]
        if not self._entries:
            self.last_left = time.monotonic()
        self._identities.forget(node_id)
        self._cache.clear_snapshot(node_id)
        log.info("sidecar left", extra={"node": node_id, "app_id": entry.sidecar.app_id})
        if not self.holding:
            self._recompute()

    def replace_sidecar(self, sidecar: Sidecar) -> bool:
        """A live sidecar's reloaded resources (hot reload); False if it has left."""
        entry = self._entries.get(sidecar.node_id)
        if entry is None:
            return False
        self._entries[sidecar.node_id] = _Entry(entry.stream_id, sidecar)
        if not self.holding:
            self._recompute()
        return True

    def reload_sidecar(self, sidecar: Sidecar) -> None:
        """A live sidecar's resource files read again (from disk or from Kubernetes)."""
        if self.replace_sidecar(sidecar):
            log.info(
                "resources reloaded",
                extra={
                    "node": sidecar.node_id,
                    "app_id": sidecar.app_id,
                    "files": [f for f, _ in sidecar.resource_files],
                },
            )

    def rotate_certificates(self) -> list[str]:
        """Re-sign certificates past half-life and push them (as new SDS versions)."""
        rotated = [n for n in self._identities.rotate_due() if n in self._entries]
        if rotated and not self.holding:
            self._recompute()
        return rotated

    def _recompute(self) -> None:
        # O(sidecars²) protos per change; fine for one machine or a modest cluster. A debounce
        # belongs here if joins ever come in storms.
        mesh = self.mesh()
        self.generation += 1
        for sidecar in mesh.sidecars:
            if sidecar.node_id not in self._entries:
                continue  # a peer: its own replica serves it
            try:
                snapshot = Snapshot.build(self._translate(sidecar, mesh).all())
                self._cache.set_snapshot(sidecar.node_id, snapshot)
            except Exception:
                # A translator bug for one node must not take the others down with it; that
                # node keeps its previous snapshot.
                log.exception("snapshot failed", extra={"node": sidecar.node_id})
        log.debug(
            "snapshots recomputed",
            extra={"generation": self.generation, "sidecars": len(mesh.sidecars)},
        )
