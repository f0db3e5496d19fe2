"""Per-node snapshots of xDS resources, and watches on them. Knows nothing about gRPC.

A :class:`Snapshot` is an immutable bundle: for each type URL, the resources by name and a
version. Versions are content hashes, so recomputing an unchanged configuration yields the
same version and the server sends nothing (Envoy ACKs every response, and a resend loop is
costly). The :class:`SnapshotCache` keeps the latest snapshot per node id and wakes that
node's :class:`Watch` objects when it changes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message

from tandem.xds import resource_types as rt


class InconsistentSnapshotError(ValueError):
    """A resource refers to an RDS/EDS name the snapshot does not hold."""


def _version_of(resources: Mapping[str, Message]) -> str:
    digest = hashlib.sha256()
    for name in sorted(resources):
        digest.update(name.encode())
        digest.update(b"\0")
        # Deterministic serialisation makes map fields (typed_per_filter_config, metadata)
        # hash the same however they were built.
        digest.update(resources[name].SerializeToString(deterministic=True))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Resources by type URL and name, with one version per type URL."""

    resources: Mapping[str, Mapping[str, Message]]
    versions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, resources: Iterable[Message]) -> Snapshot:
        """Group resources by type, reject duplicate names, version each type by content."""
        by_type: dict[str, dict[str, Message]] = {url: {} for url in rt.PUSH_ORDER}
        for resource in resources:
            url = rt.type_url_of(resource)
            name = rt.resource_name(resource)
            group = by_type.setdefault(url, {})
            if name in group:
                # Envoy NACKs a response with duplicate names; refuse to build one.
                raise ValueError(f"duplicate {rt.SHORT_NAMES.get(url, url)} resource {name!r}")
            group[name] = resource
        frozen = {url: MappingProxyType(group) for url, group in by_type.items()}
        versions = {url: _version_of(group) for url, group in by_type.items()}
        return cls(MappingProxyType(frozen), MappingProxyType(versions))

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, "")

    def of_type(self, type_url: str) -> Mapping[str, Message]:
        return self.resources.get(type_url, MappingProxyType({}))

    def missing_references(self) -> list[tuple[str, str, str]]:
        """(referring resource, type URL, name) for every reference with no resource."""
        missing = []
        for group in self.resources.values():
            for name, resource in group.items():
                for url, ref in rt.references(resource):
                    if ref not in self.of_type(url):
                        missing.append((name, url, ref))
        return missing

    def check_consistent(self) -> None:
        missing = self.missing_references()
        if missing:
            detail = ", ".join(
                f"{owner} -> {rt.SHORT_NAMES.get(url, url)} {ref!r}" for owner, url, ref in missing
            )
            raise InconsistentSnapshotError(f"snapshot refers to missing resources: {detail}")


class Watch:
    """Wakes a consumer whenever its node's snapshot changes; only the latest is kept."""

    def __init__(self, cache: SnapshotCache, node_id: str) -> None:
        self._cache = cache
        self.node_id = node_id
        self._latest: Snapshot | None = None
        self._changed = asyncio.Event()
        self._cancelled = False

    def _deliver(self, snapshot: Snapshot | None) -> None:
        self._latest = snapshot
        self._changed.set()

    async def next(self) -> Snapshot | None:
        """The node's latest snapshot once it differs from the last one returned.

        ``None`` means the node's snapshot was cleared.
        """
        await self._changed.wait()
        self._changed.clear()
        return self._latest

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self._cache._remove_watch(self)


class SnapshotCache:
    """Latest snapshot per node id, plus watches. Single-threaded (one event loop)."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._watches: dict[str, set[Watch]] = {}

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> None:
        """Store a consistent snapshot and wake the node's watches if anything changed."""
        snapshot.check_consistent()
        previous = self._snapshots.get(node_id)
        self._snapshots[node_id] = snapshot
        if previous is not None and dict(previous.versions) == dict(snapshot.versions):
            return
        for watch in self._watches.get(node_id, ()):
            watch._deliver(snapshot)

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def clear_snapshot(self, node_id: str) -> None:
        if self._snapshots.pop(node_id, None) is not None:
            for watch in self._watches.get(node_id, ()):
                watch._deliver(None)

    def node_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._snapshots))

    def watch(self, node_id: str) -> Watch:
        """A watch that fires at once if the node already has a snapshot."""
        watch = Watch(self, node_id)
        self._watches.setdefault(node_id, set()).add(watch)
        current = self._snapshots.get(node_id)
        if current is not None:
            watch._deliver(current)
        return watch

    def _remove_watch(self, watch: Watch) -> None:
        group = self._watches.get(watch.node_id)
        if group is not None:
            group.discard(watch)
            if not group:
                del self._watches[watch.node_id]
