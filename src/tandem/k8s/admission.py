"""An ``AdmissionReview`` (admission.k8s.io/v1) in, its answer out. Pure.

The webhook never refuses a pod: a pod it cannot inject is admitted unchanged with a
warning (kubectl prints those), so a typo in an annotation never blocks a rollout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from tandem.k8s import annotations as ann
from tandem.k8s.inject import InjectorSettings, already_injected, patch

API_VERSION = "admission.k8s.io/v1"
# Kubernetes keeps each warning under 256 characters.
_MAX_WARNING = 250


class ReviewError(ValueError):
    """The body is not an AdmissionReview this webhook can answer (HTTP 400)."""


def _warning(text: str) -> str:
    text = "tandem: " + text
    return text if len(text) <= _MAX_WARNING else text[: _MAX_WARNING - 1] + "…"


def _fallback_app_id(pod: Mapping[str, Any]) -> str:
    """Dapr's default app id: the pod's owner (a ReplicaSet's Deployment) or its name."""
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        name = str(owner.get("name") or "")
        if owner.get("kind") == "ReplicaSet" and "-" in name:
            return name.rsplit("-", 1)[0]  # the pod-template hash
        if name:
            return name
    name = str(meta.get("name") or meta.get("generateName") or "").rstrip("-")
    return name


def decide(
    pod: Mapping[str, Any], namespace: str, settings: InjectorSettings
) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """(the JSON patch or None, warnings) for one pod."""
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping) or not ann.enabled(annotations):
        return None, []
    if already_injected(pod):
        return None, []
    try:
        spec = ann.parse({str(k): str(v) for k, v in annotations.items()}, _fallback_app_id(pod))
        ops = patch(pod, spec, settings, namespace)
    except ValueError as exc:
        return None, [_warning(f"sidecar not injected: {exc}")]
    return ops, [_warning(note) for note in spec.notes]


def review(body: object, settings: InjectorSettings) -> dict[str, Any]:
    """The AdmissionReview to send back for ``body`` (the parsed request JSON)."""
    if not isinstance(body, Mapping) or body.get("kind") != "AdmissionReview":
        raise ReviewError("expected an AdmissionReview")
    if body.get("apiVersion") != API_VERSION:
        raise ReviewError(f"expected apiVersion {API_VERSION}, got {body.get('apiVersion')!r}")
    request = body.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise ReviewError("the AdmissionReview has no request uid")
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    pod = request.get("object")
    kind = request.get("kind") or {}
    warnings: list[str] = []
    ops = None
    # Only a new pod can gain containers: a pod's container lists are immutable afterwards.
    creating = request.get("operation", "CREATE") == "CREATE"
    is_pod = kind.get("kind") == "Pod" and kind.get("group", "") == ""
    if creating and is_pod and isinstance(pod, Mapping):
        namespace = str(
            request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default"
        )
        ops, warnings = decide(pod, namespace, settings)
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
