"""``secretKeyRef`` in HTTPEndpoint headers and ``clientTLS``, resolved by `tandem run`.

HTTPEndpoints are translated by the control plane, which has no secret stores (and the
env store is the sidecar's environment, not the control plane's). So `tandem run`, whose
environment and files the runtime shares, opens the app's secret stores and resolves
each reference once at start; the values travel only in the node metadata of the
sidecar's Envoy bootstrap (an owner-only file in an owner-only run directory, as the API
tokens do) and reach Envoy's own configuration over the private xDS socket. They are
never logged, never in the metadata API, never in an error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.resources import HTTPEndpoint, ResourceError, SecretKeyRef, load_resources

if TYPE_CHECKING:
    from tandem.blocks.secrets.store import SecretStore

TLS_FIELDS = ("rootCA", "certificate", "privateKey")


def header_field(name: str) -> str:
    return f"header:{name}"


def tls_field(name: str) -> str:
    return f"clientTLS.{name}"


def references(ep: HTTPEndpoint) -> list[tuple[str, str, SecretKeyRef]]:
    """(key in the resolved map, field path in the YAML, reference) of each secretKeyRef."""
    out = [
        (header_field(h.name), f"spec.headers[{i}].secretKeyRef", h.secret_key_ref)
        for i, h in enumerate(ep.headers)
        if h.secret_key_ref is not None
    ]
    tls = ep.client_tls
    if tls is not None:
        docs = (tls.root_ca, tls.certificate, tls.private_key)
        for name, doc in zip(TLS_FIELDS, docs, strict=True):
            if doc is not None and doc.secret_key_ref is not None:
                out.append(
                    (tls_field(name), f"spec.clientTLS.{name}.secretKeyRef", doc.secret_key_ref)
                )
    return out


def resolve_endpoint(ep: HTTPEndpoint, stores: dict[str, SecretStore]) -> dict[str, str]:
    from tandem.blocks.secrets.resolve import lookup_secret

    out = {}
    for key, where, ref in references(ep):
        if not ep.secret_store:
            raise ResourceError(
                ep.source,
                where,
                f"HTTPEndpoint {ep.name} names a secret but has no auth.secretStore "
                "(self-hosted, there is no default secret store)",
            )
        try:
            out[key] = lookup_secret(stores, ep.secret_store, ref)
        except ValueError as exc:
            raise ResourceError(ep.source, where, f"HTTPEndpoint {ep.name}: {exc}") from None
    return out


def endpoint_secrets(
    paths: Sequence[Path], *, app_id: str, namespace: str | None, home: Path
) -> dict[str, dict[str, str]]:
    """Endpoint name → {``header:<name>`` / ``clientTLS.<doc>``: value} for every HTTPEndpoint
    of this app that references a secret (blocking: call from a thread)."""
    try:
        loaded = load_resources(list(paths), app_id=app_id, namespace=namespace)
    except ResourceError:
        return {}  # an invalid resource is the runtime's to report, where it always is
    wanted = [ep for ep in loaded.http_endpoints if references(ep)]
    if not wanted:
        return {}
    # Here, not at the top: most sidecars have no such endpoint, and the secret stores'
    # modules are a good part of the bootstrap step's start.
    from tandem.blocks.registry import ComponentContext
    from tandem.blocks.secrets.resolve import open_secret_stores

    ctx = ComponentContext(app_id=app_id, namespace=namespace or "", home=home)
    service, _ = open_secret_stores(loaded.components, ctx)
    try:
        return {ep.name: resolve_endpoint(ep, service.stores) for ep in wanted}
    finally:
        for store in service.stores.values():
            store.close()
