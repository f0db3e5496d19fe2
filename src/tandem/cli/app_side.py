"""`tandem run`'s app-facing flags, as `dapr run` takes them (README "App-facing flags").

Kept apart from ``run.py``: these options become runtime arguments, node metadata for the
control plane (which turns them into Envoy config), Envoy arguments and files prepared
before Envoy starts. ``--app-protocol`` itself stays with the other core flags.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# A Unix socket path must fit sockaddr_un (108 bytes with the final NUL).
MAX_SOCKET_PATH = 107
APP_CHANNEL_SOCKET = "app.sock"
APP_HEALTH_SOCKET = "app-health.sock"


class AppSideError(Exception):
    """A flag or file problem, worded for the person who ran `tandem run`."""


@dataclass(frozen=True, slots=True)
class AppSideOptions:
    enable_app_health_check: bool = False
    app_health_check_path: str = "/healthz"
    app_health_probe_interval: float = 5.0  # seconds
    app_health_probe_timeout: float = 500.0  # milliseconds
    app_health_threshold: int = 3
    app_max_concurrency: int | None = None
    unix_domain_socket: Path | None = None
    enable_api_logging: bool = False
    # Envoy's worker threads. One by default: a sidecar serves one app, one worker proxies
    # far more than the runtime and the app behind it serve, and each further worker adds
    # its own connections, TLS sessions and memory (BENCHMARKS.md, issue 21).
    envoy_concurrency: int = 1

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> AppSideOptions:
        # Dapr reads a value below 1 (its default is -1) as "no limit".
        limit = a.app_max_concurrency
        return cls(
            enable_app_health_check=a.enable_app_health_check,
            app_health_check_path=a.app_health_check_path,
            app_health_probe_interval=a.app_health_probe_interval,
            app_health_probe_timeout=a.app_health_probe_timeout,
            app_health_threshold=a.app_health_threshold,
            app_max_concurrency=limit if limit is not None and limit > 0 else None,
            unix_domain_socket=a.unix_domain_socket,
            enable_api_logging=a.enable_api_logging,
            envoy_concurrency=a.envoy_concurrency,
        )


def add_arguments(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("app-facing flags (as dapr run)")
    g.add_argument("--enable-app-health-check", action="store_true")
    g.add_argument(
        "--app-health-check-path", default="/healthz", help="HTTP apps (default /healthz)"
    )
    g.add_argument(
        "--app-health-probe-interval", type=_positive(float), default=5.0, help="seconds (5)"
    )
    g.add_argument(
        "--app-health-probe-timeout", type=_positive(float), default=500.0, help="ms (500)"
    )
    g.add_argument("--app-health-threshold", type=_positive(int), default=3, help="failures (3)")
    g.add_argument("--app-max-concurrency", type=int, help="requests in flight to the app")
    g.add_argument(
        "--unix-domain-socket", "-u", type=Path, help="also serve the Dapr APIs on sockets here"
    )
    g.add_argument("--enable-api-logging", action="store_true")
    g.add_argument(
        "--envoy-concurrency",
        type=_positive(int),
        default=1,
        help="the sidecar's Envoy worker threads (Tandem's flag; default 1)",
    )


def _positive(kind: type[int] | type[float]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


@dataclass(frozen=True, slots=True)
class ApiLog:
    path: Path
    omit_health_checks: bool
    obfuscate_urls: bool


def api_log(
    options: AppSideOptions, config: Path | None, logs_dir: Path, app_id: str
) -> ApiLog | None:
    """API logging from ``--enable-api-logging`` or the Configuration's
    ``spec.logging.apiLogging`` (the flag switches it on; the other two settings come from
    the Configuration either way, as in Dapr)."""
    settings = None
    if config is not None:
        # The resource parsers load only with a --config: `tandem run` outlives the app.
        from tandem.resources import ResourceError, load_configuration

        try:
            settings = load_configuration(config).api_logging
        except ResourceError as exc:
            raise AppSideError(f"--config: {exc}") from exc
    enabled = options.enable_api_logging or (settings is not None and settings.enabled)
    if not enabled:
        return None
    return ApiLog(
        path=logs_dir / f"{app_id}.api.log",
        omit_health_checks=settings.omit_health_checks if settings else False,
        obfuscate_urls=settings.obfuscate_urls if settings else False,
    )


def socket_paths(options: AppSideOptions, app_id: str) -> tuple[Path, Path] | None:
    """The (HTTP, gRPC) API socket paths of ``--unix-domain-socket``, named as Dapr names them."""
    directory = options.unix_domain_socket
    if directory is None:
        return None
    return directory / f"dapr-{app_id}-http.socket", directory / f"dapr-{app_id}-grpc.socket"


def prepare(options: AppSideOptions, app_id: str, log: ApiLog | None, run_dir: Path) -> None:
    """Files Envoy needs before it starts: the API log (created 0600: Envoy would make it
    world-readable), the socket directory checked and stale sockets of ours removed."""
    if log is not None:
        log.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        log.path.chmod(0o600)
    paths = socket_paths(options, app_id)
    if paths is not None:
        directory = paths[0].parent
        if not directory.is_dir():
            raise AppSideError(f"--unix-domain-socket {directory}: not a directory")
        for path in paths:
            if len(str(path)) > MAX_SOCKET_PATH:
                raise AppSideError(
                    f"--unix-domain-socket: {path} is longer than a Unix socket path may be"
                )
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()  # left by a sidecar that was killed
                else:
                    raise AppSideError(f"--unix-domain-socket: {path} exists and is not a socket")
    if len(str(run_dir / APP_CHANNEL_SOCKET)) > MAX_SOCKET_PATH:
        raise AppSideError(f"the run directory {run_dir} is too long for a Unix socket path")


def cleanup(options: AppSideOptions, app_id: str) -> None:
    from tandem.cli.watch import remove_sockets

    remove_sockets(list(socket_paths(options, app_id) or ()))


def runtime_args(options: AppSideOptions, run_dir: Path, app_port: int | None) -> list[str]:
    argv: list[str] = []
    if app_port is not None:
        argv += ["--app-channel-socket", str(run_dir / APP_CHANNEL_SOCKET)]
    if options.app_max_concurrency is not None:
        argv += ["--app-max-concurrency", str(options.app_max_concurrency)]
    if options.enable_app_health_check:
        argv += [
            "--enable-app-health-check",
            "--app-health-check-path",
            options.app_health_check_path,
            "--app-health-probe-interval",
            str(options.app_health_probe_interval),
            "--app-health-probe-timeout",
            str(options.app_health_probe_timeout),
            "--app-health-threshold",
            str(options.app_health_threshold),
        ]
        if app_port is not None:
            argv += ["--app-health-socket", str(run_dir / APP_HEALTH_SOCKET)]
    return argv


def runtime_sockets(options: AppSideOptions, run_dir: Path, app_port: int | None) -> list[Path]:
    """Sockets the runtime must have opened before Envoy starts: Envoy's first health check
    of the app would otherwise fail and hold invocations for a whole probe interval."""
    if options.enable_app_health_check and app_port is not None:
        return [run_dir / APP_HEALTH_SOCKET]
    return []


def node_metadata(
    options: AppSideOptions, run_dir: Path, app_port: int | None, log: ApiLog | None
) -> dict[str, object]:
    """What the control plane needs to configure Envoy (see ``tandem.xds.ir.Sidecar``)."""
    out: dict[str, object] = {}
    if app_port is not None:
        out["app_channel_socket"] = str(run_dir / APP_CHANNEL_SOCKET)
    if options.app_max_concurrency is not None:
        out["app_max_concurrency"] = options.app_max_concurrency
    if options.enable_app_health_check and app_port is not None:
        out["app_health"] = {
            "socket": str(run_dir / APP_HEALTH_SOCKET),
            "interval_ms": round(options.app_health_probe_interval * 1000),
        }
    if options.unix_domain_socket is not None:
        out["unix_domain_socket"] = str(options.unix_domain_socket)
    if log is not None:
        out["api_logging"] = {
            "path": str(log.path),
            "omit_health_checks": log.omit_health_checks,
            "obfuscate_urls": log.obfuscate_urls,
        }
    return out


def envoy_args(options: AppSideOptions) -> list[str]:
    # Envoy lets every worker thread open one connection to the app whatever the limit:
    # with a limit, a single worker keeps it exact.
    if options.app_max_concurrency is not None:
        return ["--concurrency", "1"]
    return ["--concurrency", str(options.envoy_concurrency)]
