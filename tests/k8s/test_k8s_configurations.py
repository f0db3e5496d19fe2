"""A pod's ``dapr.io/config`` on Envoy's side: the control plane applies the namespace's
Configuration of that name (as the API server returns it) to the joining sidecar before its
first snapshot, exactly as `tandem run --config` puts the same Configuration into the node
metadata self-hosted, and follows it as it is edited. A missing one refuses the sidecar,
naming it and its namespace; the runtime says the same in its own log."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from tandem.cli import observability
from tandem.k8s.annotations import parse
from tandem.k8s.inject import RESOURCES_DIR, RUN_DIR, InjectorSettings, containers
from tandem.k8s.mesh_sources import document
from tandem.k8s.watchers import ClusterFeed, Watches
from tandem.xds.ca import spiffe_id
from tandem.xds.cache import SnapshotCache
from tandem.xds.enrolment import WorkloadKey
from tandem.xds.identity import Identities
from tandem.xds.ir import Sidecar
from tandem.xds.registry import Registry

IDS = Identities.ephemeral()
NODE = "orders-7d9f8c6b5-x2x9q"

CONFIGURATION: dict[str, Any] = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Configuration",
    "metadata": {
        "name": "appconfig",
        "namespace": "shop",
        # The API server's bookkeeping, as a list or watch returns it.
        "uid": "0b6d1c52-3f0e-4c7a-9a55-8f0f5e2c7d11",
        "resourceVersion": "48100",
        "generation": 1,
        "creationTimestamp": "2026-11-30T09:00:00Z",
    },
    "spec": {
        "tracing": {
            "samplingRate": "1",
            "zipkin": {"endpointAddress": "http://zipkin.monitoring:9411/api/v2/spans"},
        },
        "api": {"allowed": [{"name": "state", "version": "v1.0", "protocol": "http"}]},
        "httpPipeline": {"handlers": [{"name": "upper", "type": "middleware.http.uppercase"}]},
        "accessControl": {
            "defaultAction": "deny",
            "trustDomain": "public",
            "policies": [{"appId": "checkout", "defaultAction": "allow", "namespace": "shop"}],
        },
    },
}
MIDDLEWARE: dict[str, Any] = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "upper", "namespace": "shop", "resourceVersion": "48090"},
    "spec": {"type": "middleware.http.uppercase", "version": "v1", "metadata": []},
}


def node_metadata(configuration: str | None) -> dict[str, Any]:
    """What the injected Envoy announces (tandem.k8s.inject), enrolled for its pod."""
    key = WorkloadKey.generate()
    return {
        "app_id": "orders",
        "namespace": "shop",
        "http_port": 3500,
        "grpc_port": 50001,
        "internal_port": 50002,
        "internal_address": "10.244.3.3",
        "csr": key.csr_pem,
        "credential": IDS.enrolment.mint(NODE, spiffe_id("public", "shop", "orders"), key.csr_pem),
        "key_path": "/var/run/tandem/workload.key",
        **({"configuration": configuration} if configuration else {}),
    }


def node(configuration: str | None = "appconfig") -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update(node_metadata(configuration))
    return base_pb2.Node(id=NODE, cluster="orders", metadata=meta)


def cluster(*objects: dict[str, Any]) -> tuple[Watches, Registry, SnapshotCache]:
    """The control plane's watches holding ``objects`` (listed), and its registry."""
    watches = Watches()
    for kind, reflector in watches.resources.items():
        reflector.relist([copy.deepcopy(o) for o in objects if o["kind"] == kind], "48200")
    cache = SnapshotCache()
    return watches, Registry(cache, IDS, prepare=watches.prepare), cache


def self_hosted(tmp_path: Path) -> Sidecar:
    """The same Configuration and middleware through `tandem run --config`'s path."""
    config = tmp_path / "appconfig.yaml"
    config.write_text(yaml.safe_dump(document(CONFIGURATION)))
    metadata = node_metadata(None)
    metadata["resources"] = [{"file": "upper.yaml", "yaml": yaml.safe_dump(document(MIDDLEWARE))}]
    metadata.update(observability.node_metadata(config, tmp_path))
    return Sidecar.from_node_metadata(NODE, metadata)


def test_the_sidecar_joins_with_its_configuration_as_tandem_run_applies_it(
    tmp_path: Path,
) -> None:
    watches, registry, cache = cluster(CONFIGURATION, MIDDLEWARE)
    registry.on_stream_open(1, node())
    [joined] = registry.local_sidecars()
    expected = self_hosted(tmp_path)

    assert joined.configuration == "appconfig"
    assert joined.access_control is not None
    assert joined.access_control.default_action == "deny"
    assert joined.access_control == expected.access_control
    assert joined.tracing is not None and joined.tracing == expected.tracing
    assert joined.api_access is not None and joined.api_access == expected.api_access
    assert [h.name for h in joined.http_pipeline] == ["upper"]
    assert joined.http_pipeline == expected.http_pipeline
    assert [m.name for m in joined.http_middleware] == ["upper"]
    assert joined.http_middleware == expected.http_middleware
    # Its first snapshot was built from it: nothing more to do at the next watch round.
    assert cache.get_snapshot(NODE) is not None
    feed = ClusterFeed(registry, watches)
    generation = registry.generation
    feed.sync()
    assert registry.generation == generation


def test_an_edit_reaches_envoy_and_an_invalid_one_keeps_the_last_good(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watches, registry, cache = cluster(CONFIGURATION, MIDDLEWARE)
    registry.on_stream_open(1, node())
    feed = ClusterFeed(registry, watches)
    feed.sync()
    before = cache.get_snapshot(NODE)

    edited = copy.deepcopy(CONFIGURATION)
    edited["metadata"]["resourceVersion"] = "48300"
    edited["spec"]["api"] = {"denied": [{"name": "publish", "version": "v1.0", "protocol": "http"}]}
    del edited["spec"]["accessControl"]
    watches.resources["Configuration"].apply("MODIFIED", edited)
    feed.sync()
    [sidecar] = registry.local_sidecars()
    assert sidecar.access_control is None
    assert sidecar.api_access is not None
    assert [r.name for r in sidecar.api_access.denied] == ["publish"]
    assert sidecar.api_access.allowed == ()
    assert cache.get_snapshot(NODE) != before

    broken = copy.deepcopy(edited)
    broken["metadata"]["resourceVersion"] = "48400"
    broken["spec"]["httpPipeline"]["handlers"][0]["name"] = "no-such-middleware"
    watches.resources["Configuration"].apply("MODIFIED", broken)
    feed.sync()
    assert registry.local_sidecars() == [sidecar]
    assert "k8s:Configuration/shop/appconfig" in caplog.text
    assert "no-such-middleware" in caplog.text

    # Deleted while the pod runs: the last good stays (the runtime keeps its own too).
    watches.resources["Configuration"].apply("DELETED", broken)
    feed.sync()
    assert registry.local_sidecars() == [sidecar]
    assert "'appconfig' not found in namespace 'shop'" in caplog.text


def test_a_missing_configuration_refuses_the_sidecar_naming_it() -> None:
    _, registry, _ = cluster(MIDDLEWARE)
    with pytest.raises(ValueError, match="Configuration 'appconfig' not found in namespace 'shop'"):
        registry.on_stream_open(1, node())
    assert registry.local_sidecars() == []
    # Another namespace's Configuration of that name is not the pod's.
    other = copy.deepcopy(CONFIGURATION)
    other["metadata"]["namespace"] = "bank"
    _, registry, _ = cluster(other)
    with pytest.raises(ValueError, match="not found in namespace 'shop'"):
        registry.on_stream_open(1, node())
    # Before the first list the control plane cannot tell: the Envoy retries.
    watches = Watches()
    registry = Registry(SnapshotCache(), IDS, prepare=watches.prepare)
    with pytest.raises(ValueError, match="not listed the cluster's Configurations yet"):
        registry.on_stream_open(1, node())
    # A pod without dapr.io/config does not wait for Configurations.
    registry.on_stream_open(2, node(None))
    assert [s.configuration for s in registry.local_sidecars()] == [None]


def test_an_invalid_object_of_the_namespace_does_not_keep_the_sidecar_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resiliency = json.loads((Path(__file__).parent / "fixtures/resiliency-orders.json").read_text())
    resiliency["spec"]["targets"]["apps"]["payments"]["retry"] = "no-such-policy"
    watches, registry, _ = cluster(CONFIGURATION, MIDDLEWARE, resiliency)
    registry.on_stream_open(1, node())
    [joined] = registry.local_sidecars()
    assert joined.resiliencies == ()
    # Its Configuration applies all the same (the middleware it names has its own object).
    assert joined.api_access is not None
    assert [m.name for m in joined.http_middleware] == ["upper"]
    ClusterFeed(registry, watches).sync()
    assert "no-such-policy" in caplog.text


def test_another_trust_domain_is_refused_by_object_field_and_reason() -> None:
    other = copy.deepcopy(CONFIGURATION)
    other["spec"]["accessControl"]["trustDomain"] = "example.org"
    _, registry, _ = cluster(other, MIDDLEWARE)
    with pytest.raises(ValueError) as refused:
        registry.on_stream_open(1, node())
    message = str(refused.value)
    assert "k8s:Configuration/shop/appconfig" in message
    assert "spec.accessControl.trustDomain" in message
    assert "'example.org' is not supported in Kubernetes" in message


def test_the_runtime_without_its_configuration_fails_naming_it(tmp_path: Path) -> None:
    """The runtime container's command line as injected, its resources folder synced but
    without the Configuration: it stops with Dapr's error, in its own log."""
    spec = parse({"dapr.io/enabled": "true", "dapr.io/config": "appconfig"}, "orders")
    settings = InjectorSettings(image="unused", control_plane_address="127.0.0.1:1")
    runtime = containers(spec, settings, "shop")[0]
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "component-statestore.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: statestore}\n"
        "spec: {type: state.in-memory, version: v1}\n"
    )
    argv = [
        sys.executable,
        *(
            a.replace(str(RESOURCES_DIR), str(tmp_path / "resources")).replace(
                str(RUN_DIR), str(tmp_path)
            )
            for a in [*runtime["command"][1:], *runtime["args"]]
        ),
    ]
    done = subprocess.run(argv, capture_output=True, timeout=120, text=True)
    assert done.returncode == 2, done.stderr
    assert "Configuration 'appconfig' not found in namespace 'shop'" in done.stderr
