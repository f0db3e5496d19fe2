"""OpenID Connect discovery for bearer middleware written without ``jwksURL``: the
control plane reads the issuer's ``/.well-known/openid-configuration`` and hands Envoy the
``jwks_uri`` it names (Envoy fetches and caches the keys itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # httpx (with its CLI's rich and pygments) loads only when discovery runs
    import httpx

WELL_KNOWN = "/.well-known/openid-configuration"
TIMEOUT_SECONDS = 5.0


class DiscoveryError(Exception):
    pass


async def jwks_uri(issuer: str, client: httpx.AsyncClient) -> str:
    """The ``jwks_uri`` of ``issuer``'s OpenID configuration; DiscoveryError says why not."""
    import httpx

    url = issuer.rstrip("/") + WELL_KNOWN
    try:
        response = await client.get(url, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DiscoveryError(f"{url}: {exc}") from None
    uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        raise DiscoveryError(f"{url}: no http(s) jwks_uri in the OpenID configuration")
    # OpenID Connect Discovery: the document's issuer must be the one asked about.
    if isinstance(document, dict) and document.get("issuer") not in (None, issuer):
        raise DiscoveryError(
            f"{url}: the configuration is for issuer {document.get('issuer')!r}, not {issuer!r}"
        )
    return uri
