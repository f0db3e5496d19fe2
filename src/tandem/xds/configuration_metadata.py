"""What a Configuration puts into its sidecar's node metadata. Pure.

The one translation from a parsed Configuration to the node metadata the control plane
compiles into Envoy: ``tandem run --config`` (cli/envoy_config.py, cli/observability.py)
and a Kubernetes pod's ``dapr.io/config`` (tandem.k8s.configurations) both use it, so a
Configuration means the same to Envoy wherever it comes from.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from tandem.observability.export import trace_export
from tandem.resources import Configuration
from tandem.xds.ca import DEFAULT_TRUST_DOMAIN
from tandem.xds.ir import ApiAccess, access_control_metadata, pipelines_metadata


def system_ca_file() -> str | None:
    """The system trust roots as one file (Envoy needs a file to check a TLS collector)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def trust_domain(configuration: Configuration) -> str:
    """The SPIFFE trust domain the Configuration puts its sidecar in."""
    access = configuration.access_control
    return access.trust_domain if access is not None else DEFAULT_TRUST_DOMAIN


def configuration_metadata(
    configuration: Configuration, *, ca_file: str | None
) -> dict[str, object]:
    """Access control, tracing, API allow/deny lists and HTTP pipelines, as the node
    metadata carries them (tandem.xds.ir). Raises TraceExportError for unusable tracing."""
    out: dict[str, object] = {}
    if configuration.access_control is not None:
        out["access_control"] = access_control_metadata(configuration.access_control)
    export = trace_export(configuration.tracing, ca_file=ca_file)
    if export is not None:
        out["tracing"] = export.to_metadata()
    allowed = tuple(r for r in configuration.api_allowed if r.complete)
    denied = tuple(r for r in configuration.api_denied if r.complete)
    if allowed or denied:
        out["api_access"] = ApiAccess(allowed, denied).to_metadata()
    if configuration.http_pipeline or configuration.app_http_pipeline:
        # Compiled into Envoy filters by the control plane (xds/translate/middleware.py).
        out["pipelines"] = pipelines_metadata(
            configuration.http_pipeline, configuration.app_http_pipeline
        )
    return out
