"""Offline checks shared by tests/k8s: Kubernetes objects against the schema of a recent
release (kubernetes-validate), ``dapr.io`` resources against the chart's CRDs."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tandem"
KUBERNETES = kubernetes_validate.latest_version()


def validate_k8s(obj: dict[str, Any]) -> None:
    """Strict: a field the API server would not know fails too."""
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def documents(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(text):
        if doc is not None:
            assert isinstance(doc, dict), doc
            yield doc


def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, version) → the openAPIV3Schema, from the chart's crds/."""
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in documents(path.read_text()):
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                out[(crd["spec"]["names"]["kind"], version["name"])] = schema
    return out


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused: the API server silently prunes them, and a
    Dapr user's field that a CRD would drop is a field we failed to accept."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_errors(resource: dict[str, Any]) -> list[str]:
    """Why the cluster would refuse (or prune) ``resource``; empty when it is accepted."""
    group, _, version = str(resource.get("apiVersion", "")).partition("/")
    assert group == "dapr.io", resource
    schema = crds().get((str(resource.get("kind")), version))
    if schema is None:
        return [f"no CRD serves {resource.get('kind')} {resource.get('apiVersion')}"]
    checker = jsonschema.Draft7Validator(_closed(copy.deepcopy(schema)))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in checker.iter_errors(resource)
    ]


def structural_problems(schema: Any, path: str = "") -> list[str]:
    """Kubernetes' structural-schema rules that matter here: every node has a type (unless
    it preserves unknown fields), and no ``additionalProperties`` beside ``properties``."""
    problems: list[str] = []
    if not isinstance(schema, dict):
        return problems
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path or '/'}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: both properties and additionalProperties")
    for name, sub in (schema.get("properties") or {}).items():
        problems += structural_problems(sub, f"{path}/{name}")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}/*")
    return problems
