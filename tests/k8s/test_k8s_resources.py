"""The runtime's resources in a cluster: a namespace's dapr.io objects as files, for an
enrolled sidecar of that namespace only, applied to its folder (stale files removed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tandem.k8s.resource_service import authorise, runtime_files
from tandem.k8s.resources_sync import apply_files
from tandem.resources.loader import parse_text
from tandem.xds.ca import spiffe_id
from tandem.xds.enrolment import EnrolmentKey, IdentityRefusedError, WorkloadKey

FIXTURES = Path(__file__).parent / "fixtures"
NODE = "orders-7d9f8c6b5-x2x9q"


def component(name: str, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0b8c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4",
            "resourceVersion": "51200",
            "generation": 1,
            "creationTimestamp": "2026-11-30T10:00:00Z",
        },
        "spec": {
            "type": "state.redis",
            "version": "v1",
            "metadata": [{"name": "redisHost", "value": "redis:6379"}],
        },
        "scopes": ["orders"],
    }


def test_a_namespace_s_objects_become_files_the_runtime_parses() -> None:
    resiliency = json.loads((FIXTURES / "resiliency-orders.json").read_text())
    files = runtime_files(
        [component("statestore", "shop"), component("other", "bank"), resiliency], "shop"
    )
    assert [name for name, _ in files] == [
        "component-statestore.yaml",
        "resiliency-orders-to-payments.yaml",
    ]
    parsed = [r for name, text in files for r in parse_text(text, name)]
    assert sorted(r.name for r in parsed) == ["orders-to-payments", "statestore"]
    # The API server's bookkeeping is not part of the file.
    assert set(yaml.safe_load(files[0][1])["metadata"]) == {"name", "namespace"}


def test_only_an_enrolled_sidecar_reads_its_namespace() -> None:
    key = EnrolmentKey.generate()
    workload = WorkloadKey.generate()
    credential = key.mint(NODE, spiffe_id("public", "shop", "orders"), workload.csr_pem)
    claim = {
        "node_id": NODE,
        "app_id": "orders",
        "namespace": "shop",
        "csr": workload.csr_pem,
        "credential": credential,
    }
    assert authorise(key, claim) == "shop"
    with pytest.raises(IdentityRefusedError):
        authorise(key, {**claim, "namespace": "bank"})
    with pytest.raises(IdentityRefusedError):
        authorise(EnrolmentKey.generate(), claim)
    with pytest.raises(ValueError):
        authorise(key, {**claim, "credential": ""})


def test_the_folder_follows_the_set(tmp_path: Path) -> None:
    out = tmp_path / "resources"
    assert apply_files(out, [["component-a.yaml", "a: 1\n"], ["component-b.yaml", "b: 1\n"]])
    assert not apply_files(out, [["component-a.yaml", "a: 1\n"], ["component-b.yaml", "b: 1\n"]])
    assert apply_files(out, [["component-a.yaml", "a: 2\n"]])
    assert sorted(p.name for p in out.iterdir()) == ["component-a.yaml"]
    assert (out / "component-a.yaml").read_text() == "a: 2\n"
    with pytest.raises(ValueError):
        apply_files(out, [["../escape.yaml", "x: 1\n"]])
