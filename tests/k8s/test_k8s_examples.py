"""The Kubernetes examples and docs/kubernetes.md stay true: every example object is valid,
the research-agent's pod is injected into a valid Pod, every annotation the injector knows
is documented."""

from __future__ import annotations

import re
from typing import Any

import jsonpatch
from k8s_schemas import ROOT, crd_errors, documents, validate_k8s

from tandem.k8s import annotations
from tandem.k8s.admission import decide
from tandem.k8s.inject import InjectorSettings

EXAMPLES = ROOT / "examples" / "kubernetes"
DOCS = ROOT / "docs" / "kubernetes.md"
SETTINGS = InjectorSettings(
    image="registry.example/tandem:0.1.0",
    control_plane_address="tandem-controlplane.tandem-system.svc:50005",
)


def _examples() -> list[dict[str, Any]]:
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in documents(path.read_text())]


def test_every_example_object_is_valid() -> None:
    objects = _examples()
    assert {o["kind"] for o in objects} >= {"Deployment", "Component", "Service"}
    for obj in objects:
        if str(obj["apiVersion"]).startswith("dapr.io/"):
            assert crd_errors(obj) == []
        else:
            validate_k8s(obj)


def test_the_research_agent_pod_is_injected_into_a_valid_pod() -> None:
    [deployment] = [o for o in _examples() if o["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template["metadata"],
            "generateName": "research-agent-5f7d9c8b6-",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "research-agent-5f7d9c8b6",
                    "uid": "0d5e3c7a-1111-4c2b-9a77-5e4f3a2b1c0d",
                }
            ],
        },
        "spec": template["spec"],
    }

    ops, warnings = decide(pod, "research", SETTINGS)

    assert warnings == []
    assert ops is not None
    out = jsonpatch.apply_patch(pod, ops)
    validate_k8s(out)
    names = [c["name"] for c in out["spec"]["initContainers"]]
    assert names == ["tandem-enrol", "tandem-resources", "tandem-runtime", "tandem-envoy"]
    runtime = out["spec"]["initContainers"][2]["args"]
    assert runtime[runtime.index("--app-id") + 1] == "research-agent"
    assert "--enable-app-health-check" in runtime


def test_every_annotation_is_documented() -> None:
    text = DOCS.read_text()
    known = set(annotations.HONOURED) | set(annotations.IGNORED) | set(annotations.UNSUPPORTED)
    for key in sorted(known):
        short = re.sub(r"^sidecar-(liveness|readiness)-probe-.*", r"sidecar-\1-probe-*", key)
        assert f"`{annotations.PREFIX}{short}`" in text or f"`{short}`" in text, key
