"""The registry: sidecars come and go with their streams; every node is recomputed."""

from __future__ import annotations

import pytest
from xds_fixtures import node

from tandem.xds import resource_types as rt
from tandem.xds.cache import SnapshotCache
from tandem.xds.identity import Identities
from tandem.xds.ir import SidecarMetadataError
from tandem.xds.registry import Registry

IDS = Identities.ephemeral()

# By-URL invocation's clusters are in every snapshot (translate/http_endpoints.py).
URL_CLUSTERS = ["url:http", "url:https"]


def clusters(cache: SnapshotCache, node_id: str) -> list[str]:
    snapshot = cache.get_snapshot(node_id)
    assert snapshot is not None
    return sorted(snapshot.of_type(rt.CLUSTER))


def test_joining_app_appears_in_every_nodes_snapshot() -> None:
    cache = SnapshotCache()
    registry = Registry(cache, IDS)
    registry.on_stream_open(1, node("a", identities=IDS))
    assert clusters(cache, "a~1") == ["app:a", *URL_CLUSTERS]

    registry.on_stream_open(2, node("b", app_port=8080, identities=IDS))

    assert clusters(cache, "a~1") == ["app:a", "app:b", *URL_CLUSTERS]
    assert clusters(cache, "b~1") == ["app:a", "app:b", "local_app", *URL_CLUSTERS]


def test_leaving_app_disappears_and_its_snapshot_is_dropped() -> None:
    cache = SnapshotCache()
    registry = Registry(cache, IDS)
    registry.on_stream_open(1, node("a", identities=IDS))
    registry.on_stream_open(2, node("b", identities=IDS))

    registry.on_stream_closed(2, "b~1")

    assert clusters(cache, "a~1") == ["app:a", *URL_CLUSTERS]
    assert cache.get_snapshot("b~1") is None
    assert registry.mesh().app_ids() == ("a",)


def test_a_second_stream_for_a_live_node_is_refused_and_its_close_changes_nothing() -> None:
    cache = SnapshotCache()
    registry = Registry(cache, IDS)
    registry.on_stream_open(1, node("a", identities=IDS))
    certificate = IDS.certificate("a~1")

    # A replayed enrolment (same node id, credential and CSR) while a's stream is live.
    with pytest.raises(PermissionError, match="already has a live stream"):
        registry.on_stream_open(2, node("a", identities=IDS))
    registry.on_stream_closed(2, "a~1")

    assert registry.mesh().app_ids() == ("a",)
    assert cache.get_snapshot("a~1") is not None
    assert IDS.certificate("a~1") is certificate


def test_a_reconnect_after_the_old_stream_closed_is_admitted() -> None:
    cache = SnapshotCache()
    registry = Registry(cache, IDS)
    registry.on_stream_open(1, node("a", identities=IDS))
    registry.on_stream_closed(1, "a~1")

    registry.on_stream_open(2, node("a", identities=IDS))

    assert registry.mesh().app_ids() == ("a",)
    assert cache.get_snapshot("a~1") is not None


async def test_after_a_restart_nothing_is_published_until_the_awaited_sidecars_are_back() -> None:
    cache = SnapshotCache()
    a, b = node("a", pid=4001, identities=IDS), node("b", pid=4002, identities=IDS)
    registry = Registry(cache, IDS, awaited_pids=frozenset({4001, 4002}))
    registry.on_stream_open(1, a)
    assert cache.get_snapshot("a~1") is None  # held: a alone would lose its peers

    registry.on_stream_open(2, b)
    await registry.all_awaited_back()  # both are back: returns at once
    assert cache.get_snapshot("a~1") is None
    registry.release()

    assert clusters(cache, "a~1") == ["app:a", "app:b", *URL_CLUSTERS]


def test_bad_metadata_is_refused_with_the_reason() -> None:
    registry = Registry(SnapshotCache(), IDS)

    with pytest.raises(SidecarMetadataError, match="grpc_port is required"):
        registry.on_stream_open(1, node("a", grpc_port=None, identities=IDS))
