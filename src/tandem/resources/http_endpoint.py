"""``kind: HTTPEndpoint`` — a non-Dapr HTTP service reachable through service invocation."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._parse import Node
from .common import (
    MetadataItem,
    SecretKeyRef,
    in_scope,
    parse_metadata_items,
    parse_object_meta,
    parse_scopes,
    parse_value_or_secret,
)

RENEGOTIATION = ("RenegotiateNever", "RenegotiateOnceAsClient", "RenegotiateFreelyAsClient")


@dataclass(frozen=True, slots=True)
class TLSDocument:
    """A PEM document given inline or through the secret store."""

    value: str | None = None
    secret_key_ref: SecretKeyRef | None = None


@dataclass(frozen=True, slots=True)
class ClientTLS:
    root_ca: TLSDocument | None = None
    certificate: TLSDocument | None = None
    private_key: TLSDocument | None = None
    renegotiation: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPEndpoint:
    name: str
    base_url: str
    namespace: str | None = None
    headers: tuple[MetadataItem, ...] = ()
    client_tls: ClientTLS | None = None
    secret_store: str | None = None
    scopes: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    def is_scoped_for(self, app_id: str) -> bool:
        return in_scope(self.scopes, app_id)


def _tls_document(node: Node) -> TLSDocument | None:
    if not node.present:
        return None
    value, ref = parse_value_or_secret(node)
    return TLSDocument(value=value if ref is None else None, secret_key_ref=ref)


def _client_tls(node: Node) -> ClientTLS | None:
    if not node.present:
        return None
    renegotiation = node.get("renegotiation").choice(RENEGOTIATION, "") or None
    return ClientTLS(
        root_ca=_tls_document(node.get("rootCA")),
        certificate=_tls_document(node.get("certificate")),
        private_key=_tls_document(node.get("privateKey")),
        renegotiation=renegotiation,
    )


def parse_http_endpoint(doc: Node) -> HTTPEndpoint:
    meta = parse_object_meta(doc)
    spec = doc.get("spec").require_present()
    url_node = spec.get("baseUrl")
    base_url = url_node.required_text().strip()
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise url_node.error(f"{base_url!r} must be an absolute http:// or https:// URL")
    return HTTPEndpoint(
        name=meta.name,
        namespace=meta.namespace,
        base_url=base_url,
        headers=parse_metadata_items(spec.get("headers"), what="header"),
        client_tls=_client_tls(spec.get("clientTLS")),
        secret_store=doc.get("auth").get("secretStore").optional_text() or None,
        scopes=parse_scopes(doc),
        source=doc.file,
    )
