"""`tandem run`'s part of observability: the Configuration's tracing as node metadata, so
the control plane gives this sidecar's Envoy its tracer (``tandem.xds.translate.tracing``)."""

from __future__ import annotations

import ssl
from pathlib import Path

from tandem.observability.export import TraceExportError, trace_export
from tandem.resources import ResourceError, load_configuration


class ObservabilityError(Exception):
    """A tracing setting that cannot be used, worded for the person who ran `tandem run`."""


def _system_ca_file() -> str | None:
    """The system trust roots as one file (Envoy needs a file to check a TLS collector)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def node_metadata(config: Path | None) -> dict[str, object]:
    if config is None:
        return {}
    try:
        tracing = load_configuration(config).tracing
        export = trace_export(tracing, ca_file=_system_ca_file())
    except (ResourceError, TraceExportError) as exc:
        raise ObservabilityError(f"--config: {exc}") from exc
    return {} if export is None else {"tracing": export.to_metadata()}
