"""`tandem run`'s part of observability: the Configuration's tracing as node metadata, so
the control plane gives this sidecar's Envoy its tracer (``tandem.xds.translate.tracing``)."""

from __future__ import annotations

import ssl
from pathlib import Path


class ObservabilityError(Exception):
    """A tracing setting that cannot be used, worded for the person who ran `tandem run`."""


def _system_ca_file() -> str | None:
    """The system trust roots as one file (Envoy needs a file to check a TLS collector)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


METRICS_SOCKET = "metrics.sock"


def runtime_args(run_dir: Path, admin_socket: Path) -> list[str]:
    """The runtime serves /metrics (its own and Envoy's) on a socket Envoy forwards to."""
    return [
        "--metrics-socket",
        str(run_dir / METRICS_SOCKET),
        "--proxy-admin-socket",
        str(admin_socket),
    ]


def node_metadata(config: Path | None, run_dir: Path) -> dict[str, object]:
    # Called by the bootstrap step (cli/envoy_config.py), not by the long-lived `tandem run`.
    from tandem.observability.export import TraceExportError, trace_export
    from tandem.resources import ResourceError, load_configuration
    from tandem.xds.ir import ApiAccess, pipelines_metadata

    out: dict[str, object] = {"runtime_metrics_socket": str(run_dir / METRICS_SOCKET)}
    if config is None:
        return out
    try:
        configuration = load_configuration(config)
        export = trace_export(configuration.tracing, ca_file=_system_ca_file())
    except (ResourceError, TraceExportError) as exc:
        raise ObservabilityError(f"--config: {exc}") from exc
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
