"""`tandem run`'s part of observability: the Configuration's tracing as node metadata, so
the control plane gives this sidecar's Envoy its tracer (``tandem.xds.translate.tracing``)."""

from __future__ import annotations

from pathlib import Path


class ObservabilityError(Exception):
    """A tracing setting that cannot be used, worded for the person who ran `tandem run`."""


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
    from tandem.observability.export import TraceExportError
    from tandem.resources import ResourceError, load_configuration
    from tandem.xds.configuration_metadata import configuration_metadata, system_ca_file

    out: dict[str, object] = {"runtime_metrics_socket": str(run_dir / METRICS_SOCKET)}
    if config is None:
        return out
    try:
        out.update(configuration_metadata(load_configuration(config), ca_file=system_ca_file()))
    except (ResourceError, TraceExportError) as exc:
        raise ObservabilityError(f"--config: {exc}") from exc
    return out
