"""The control plane's watches: recorded Pods and dapr.io objects (as the API server returns
them, with watch events, deletions, bookmarks and a 410) produce the right registry and
xDS; then the same through lightkube against a stand-in API server (list, watch, re-list)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver import ApiServer
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import struct_pb2

from tandem.k8s.mesh_sources import peers_from_pods, resource_files
from tandem.k8s.reflector import Gone, Reflector
from tandem.k8s.watchers import ClusterFeed, run_watchers
from tandem.xds import resource_types as rt
from tandem.xds.ca import spiffe_id
from tandem.xds.cache import SnapshotCache
from tandem.xds.enrolment import WorkloadKey
from tandem.xds.identity import Identities
from tandem.xds.registry import Registry

FIXTURES = Path(__file__).parent / "fixtures"
IDS = Identities.ephemeral()


async def wait_until_async(ready: Callable[[], bool], *, what: str, deadline_s: float = 20) -> None:
    """Poll ``ready`` on the event loop (the watchers run on it) until the deadline."""
    end = time.monotonic() + deadline_s
    while not ready():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not seen within {deadline_s:g}s")
        await asyncio.sleep(0.05)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / "pods-watch.jsonl").read_text().splitlines()]


def local_node(app_id: str, node_id: str, namespace: str = "shop") -> base_pb2.Node:
    """An enrolled Envoy of this replica, as it announces itself."""
    key = WorkloadKey.generate()
    meta = struct_pb2.Struct()
    meta.update(
        {
            "app_id": app_id,
            "namespace": namespace,
            "http_port": 3500,
            "grpc_port": 50001,
            "internal_port": 50002,
            "internal_address": "10.244.3.3",
            "csr": key.csr_pem,
            "credential": IDS.enrolment.mint(
                node_id, spiffe_id("public", namespace, app_id), key.csr_pem
            ),
            "key_path": "/var/run/tandem/workload.key",
        }
    )
    return base_pb2.Node(id=node_id, cluster=app_id, metadata=meta)


def endpoints(cache: SnapshotCache, node_id: str, app_id: str) -> list[str]:
    snapshot = cache.get_snapshot(node_id)
    assert snapshot is not None
    assignment = snapshot.of_type(rt.ENDPOINT).get(f"app:{app_id}")
    if assignment is None:
        return []
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    return sorted(
        f"{e.endpoint.address.socket_address.address}:{e.endpoint.address.socket_address.port_value}"
        for group in assignment.endpoints
        for e in group.lb_endpoints
    )


def test_pod_events_move_the_peers() -> None:
    reflector = Reflector("Pod")
    listing = fixture("pods-list.json")
    assert reflector.relist(listing["items"], listing["metadata"]["resourceVersion"])
    assert sorted(p.app_id for p in peers_from_pods(reflector.objects.values()).values()) == [
        "orders",
        "payments",
    ]
    payments = peers_from_pods(reflector.objects.values())["payments-6b8f7c5d4-qm7zt"]
    assert (payments.internal_address, payments.internal_port) == ("10.244.2.9", 50002)
    assert payments.app_protocol == "grpc"

    added, ready, terminating, deleted, bookmark, expired = events()
    # A starting pod (not Ready yet) is known but not routed to.
    assert reflector.apply(added["type"], added["object"])
    assert "orders-7d9f8c6b5-h4k8w" not in peers_from_pods(reflector.objects.values())
    assert reflector.apply(ready["type"], ready["object"])
    assert "orders-7d9f8c6b5-h4k8w" in peers_from_pods(reflector.objects.values())
    # Terminating: out of the mesh at once, before the deletion completes.
    reflector.apply(terminating["type"], terminating["object"])
    assert "orders-7d9f8c6b5-x2x9q" not in peers_from_pods(reflector.objects.values())
    assert reflector.apply(deleted["type"], deleted["object"])
    assert "/orders-7d9f8c6b5-x2x9q" not in {k.split("shop")[1] for k in reflector.objects}
    assert reflector.resource_version == "48330"
    # A bookmark moves the version only; a deletion of what is gone changes nothing.
    assert not reflector.apply(bookmark["type"], bookmark["object"])
    assert reflector.resource_version == "48400"
    assert not reflector.apply(deleted["type"], deleted["object"])
    with pytest.raises(Gone):
        reflector.apply(expired["type"], expired["object"])
    # The re-list after 410 drops what was deleted while no watch was open.
    only_payments = [p for p in listing["items"] if p["metadata"]["name"].startswith("payments")]
    assert reflector.relist(only_payments, "48500")
    assert list(peers_from_pods(reflector.objects.values())) == ["payments-6b8f7c5d4-qm7zt"]


def test_the_registry_routes_to_peers_and_applies_a_resiliency() -> None:
    cache = SnapshotCache()
    registry = Registry(cache, IDS)
    registry.on_stream_open(1, local_node("orders", "orders-7d9f8c6b5-local"))
    feed = ClusterFeed(registry)
    listing = fixture("pods-list.json")
    feed.pods.relist(listing["items"], "48250")
    feed.sync()

    # Peers streaming from the other replica are routed to; only local nodes get snapshots.
    assert endpoints(cache, "orders-7d9f8c6b5-local", "payments") == ["10.244.2.9:50002"]
    assert endpoints(cache, "orders-7d9f8c6b5-local", "orders") == [
        "10.244.1.17:50002",
        "10.244.3.3:50002",
    ]
    assert cache.get_snapshot("payments-6b8f7c5d4-qm7zt") is None

    resiliency = fixture("resiliency-orders.json")
    feed.resources["Resiliency"].apply("ADDED", resiliency)
    feed.sync()
    [sidecar] = registry.local_sidecars()
    assert [r.name for r in sidecar.resiliencies] == ["orders-to-payments"]
    assert [f for f, _ in sidecar.resource_files] == ["k8s:Resiliency/shop/orders-to-payments"]
    # Another namespace's objects do not apply.
    other = copy.deepcopy(resiliency)
    other["metadata"].update(namespace="bank", name="bank-policy")
    assert [f for f, _ in resource_files([resiliency, other], "bank")] == [
        "k8s:Resiliency/bank/bank-policy"
    ]

    # An invalid edit changes nothing; the deletion removes the policy.
    broken = copy.deepcopy(resiliency)
    broken["spec"]["targets"]["apps"]["payments"]["retry"] = "no-such-policy"
    feed.resources["Resiliency"].apply("MODIFIED", broken)
    feed.sync()
    assert [r.name for r in registry.local_sidecars()[0].resiliencies] == ["orders-to-payments"]
    feed.resources["Resiliency"].apply("DELETED", broken)
    feed.sync()
    assert registry.local_sidecars()[0].resiliencies == ()

    feed.pods.relist([], "48600")
    feed.sync()
    assert endpoints(cache, "orders-7d9f8c6b5-local", "payments") == []


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


async def test_watchers_follow_the_api_server_and_relist_after_410(
    api: ApiServer, tmp_path: Path
) -> None:
    from lightkube import AsyncClient, KubeConfig

    listing = fixture("pods-list.json")
    orders_pod, payments_pod = listing["items"]
    api.put(orders_pod)
    cache = SnapshotCache()
    registry = Registry(cache, IDS)
    registry.on_stream_open(1, local_node("orders", "orders-7d9f8c6b5-local"))
    client = AsyncClient(config=KubeConfig.from_file(api.kubeconfig(tmp_path / "kubeconfig")))
    task = asyncio.create_task(run_watchers(client, registry, poll_seconds=0.05))

    def peers() -> set[str]:
        return {s.node_id for s in registry.mesh().sidecars} - {"orders-7d9f8c6b5-local"}

    try:
        await wait_until_async(lambda: peers() == {"orders-7d9f8c6b5-x2x9q"}, what="the list")
        api.put(payments_pod)
        await wait_until_async(lambda: "payments-6b8f7c5d4-qm7zt" in peers(), what="a watch ADDED")
        api.put(fixture("resiliency-orders.json"))
        await wait_until_async(
            lambda: (
                [r.name for r in registry.local_sidecars()[0].resiliencies]
                == ["orders-to-payments"]
            ),
            what="the Resiliency",
        )
        # The watch ends (its timeout) and history is compacted while the payments pod goes:
        # the watcher's next watch gets 410 Gone, lists again and sees the deletion.
        api.compact()
        api.end_watches()
        api.delete("Pod", "shop", "payments-6b8f7c5d4-qm7zt")
        api.compact()
        await wait_until_async(
            lambda: peers() == {"orders-7d9f8c6b5-x2x9q"}, what="the re-list after 410"
        )
        api.delete("Resiliency", "shop", "orders-to-payments")
        await wait_until_async(
            lambda: registry.local_sidecars()[0].resiliencies == (), what="a watch DELETED"
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
    watches = [r for r in api.requests if r.startswith("GET /api/v1/pods")]
    assert len(watches) >= 3  # list, watch, and the list again after 410
