"""What the control plane's registry and translator take from API objects. Pure.

- :func:`peers_from_pods`: every injected pod that is ready is a sidecar of the mesh (its
  node id the pod name, as the injector sets it; its address the pod IP and the internal
  port its annotations ask for). Each replica routes to all of them, whichever replica
  their Envoy streams from.
- :func:`resource_files`: the ``dapr.io`` and traffic-policy objects of one namespace as the
  (file, YAML) pairs hot reload feeds a sidecar from its ``--resources-path``
  (``Sidecar.with_resource_files``), so a Resiliency or HTTPEndpoint applied with kubectl
  reaches the Envoys as an edited file does self-hosted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from tandem.k8s import annotations as ann
from tandem.k8s.admission import _fallback_app_id
from tandem.k8s.inject import INJECTED_LABEL
from tandem.xds.ir import Sidecar

# The kinds whose objects shape invocations (as tandem.resources.loader.INVOCATION_KINDS
# plus middleware Components; the rest are the runtime's).
_INVOCATION_KINDS = frozenset({"Resiliency", "HTTPEndpoint", "HTTPRoute", "BackendTrafficPolicy"})
# Top-level fields a Dapr YAML file has; the API server's bookkeeping is left out.
_DOCUMENT_FIELDS = ("apiVersion", "kind", "metadata", "spec", "scopes", "auth")


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def peer_from_pod(pod: Mapping[str, Any]) -> Sidecar | None:
    """The sidecar of an injected, ready pod; None for any other pod."""
    meta = pod.get("metadata") or {}
    if (meta.get("labels") or {}).get(INJECTED_LABEL) != "true" or not _ready(pod):
        return None
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    try:
        spec = ann.parse(annotations, _fallback_app_id(pod))
    except ValueError:
        return None  # the injector did not inject it either
    return Sidecar(
        node_id=str(meta["name"]),
        app_id=spec.app_id,
        namespace=str(meta.get("namespace") or "default"),
        http_port=spec.http_port,
        grpc_port=spec.grpc_port,
        internal_port=spec.internal_port,
        internal_address=str(pod["status"]["podIP"]),
        app_port=spec.app_port,
        app_protocol=spec.app_protocol,  # type: ignore[arg-type]
    )


def peers_from_pods(pods: Iterable[Mapping[str, Any]]) -> dict[str, Sidecar]:
    peers = (peer_from_pod(p) for p in pods)
    return {p.node_id: p for p in peers if p is not None}


def _shapes_invocations(obj: Mapping[str, Any]) -> bool:
    kind = obj.get("kind")
    if kind in _INVOCATION_KINDS:
        return True
    kind_type = (obj.get("spec") or {}).get("type")
    return (
        kind == "Component"
        and isinstance(kind_type, str)
        and kind_type.startswith("middleware.http.")
    )


def document(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as it was written: no status, uid, resourceVersion or managedFields."""
    meta = obj.get("metadata") or {}
    out = {k: obj[k] for k in _DOCUMENT_FIELDS if k in obj}
    out["metadata"] = {k: meta[k] for k in ("name", "namespace") if k in meta}
    return out


def resource_files(
    objects: Iterable[Mapping[str, Any]], namespace: str
) -> tuple[tuple[str, str], ...]:
    """One (file, YAML) pair per invocation-shaping object of ``namespace``, in a stable
    order; the file name says where it came from in errors (``k8s:Kind/ns/name``)."""
    chosen = sorted(
        (
            (str(o.get("kind")), str((o.get("metadata") or {}).get("name")), o)
            for o in objects
            if (o.get("metadata") or {}).get("namespace") == namespace and _shapes_invocations(o)
        ),
        key=lambda t: (t[0], t[1]),
    )
    return tuple(
        (f"k8s:{kind}/{namespace}/{name}", yaml.safe_dump(document(o), sort_keys=True))
        for kind, name, o in chosen
    )
