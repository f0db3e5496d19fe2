"""Snapshots (versions, consistency) and the per-node cache with watches."""

from __future__ import annotations

import asyncio

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from xds_fixtures import sidecar, snapshot_for

from tandem.xds import resource_types as rt
from tandem.xds.cache import InconsistentSnapshotError, Snapshot, SnapshotCache
from tandem.xds.ir import Mesh
from tandem.xds.translate import translate

A, B = sidecar("a"), sidecar("b")


def test_same_content_same_versions_different_content_new_versions() -> None:
    one, again, bigger = snapshot_for(A, B), snapshot_for(A, B), snapshot_for(A, B, sidecar("c"))

    assert dict(one.versions) == dict(again.versions)
    assert one.version(rt.CLUSTER) != bigger.version(rt.CLUSTER)
    assert one.version(rt.LISTENER) == bigger.version(rt.LISTENER)


def test_duplicate_names_are_refused() -> None:
    cluster = cluster_pb2.Cluster(name="app:a")

    with pytest.raises(ValueError, match="duplicate CDS resource 'app:a'"):
        Snapshot.build([cluster, cluster])


def test_missing_route_config_or_assignment_is_inconsistent() -> None:
    resources = translate(A, Mesh.of([A, B]))
    partial = Snapshot.build(
        [*resources.listeners, *resources.clusters, *resources.routes[:1], *resources.endpoints[:1]]
    )

    with pytest.raises(InconsistentSnapshotError) as err:
        SnapshotCache().set_snapshot("a~1", partial)
    assert "dapr_grpc -> RDS 'dapr_grpc'" in str(err.value)
    assert "app:b -> EDS 'app:b'" in str(err.value)


async def test_watch_fires_on_change_only() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("a~1", snapshot_for(A))
    watch = cache.watch("a~1")

    assert await asyncio.wait_for(watch.next(), 1) is not None  # the current one, at once
    cache.set_snapshot("a~1", snapshot_for(A))  # identical: no wake-up
    waiting = asyncio.ensure_future(watch.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    cache.set_snapshot("a~1", snapshot_for(A, B))
    changed = await asyncio.wait_for(waiting, 1)
    assert changed is not None and "app:b" in changed.of_type(rt.CLUSTER)
    watch.cancel()


async def test_clearing_a_node_wakes_its_watch_with_none() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("a~1", snapshot_for(A))
    watch = cache.watch("a~1")
    await watch.next()

    cache.clear_snapshot("a~1")

    assert await asyncio.wait_for(watch.next(), 1) is None
    assert cache.get_snapshot("a~1") is None
