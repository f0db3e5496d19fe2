"""`python -m tandem.ext_proc`: one sidecar runtime (normally started by `tandem run`)."""

from __future__ import annotations

import gc

if __name__ == "__main__":
    # The imports below make ~40,000 objects that live as long as the process (modules,
    # classes, functions); collecting while they pile up is ~8 % of the start-up's import
    # time and finds nothing to free. Collection resumes before the runtime starts, with
    # them frozen out of its scans (issue 21: start-up).
    gc.disable()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from tandem.blocks.app_health import AppHealthConfig  # noqa: E402
from tandem.ext_proc.runtime import (  # noqa: E402
    DEFAULT_GRACEFUL_SHUTDOWN,
    DEFAULT_MAX_BODY,
    Runtime,
    RuntimeOptions,
    StartupError,
)
from tandem.logs import setup_logging  # noqa: E402

log = logging.getLogger("tandem.runtime")


def parse_args(argv: list[str] | None = None) -> RuntimeOptions:
    p = argparse.ArgumentParser(prog="python -m tandem.ext_proc")
    p.add_argument("--app-id", required=True)
    p.add_argument("--socket", required=True, type=Path)
    p.add_argument("--http-socket", type=Path, help="also serve the Dapr HTTP API here (HTTP/1.1)")
    p.add_argument("--home", required=True, type=Path)
    p.add_argument("--namespace", help="load only this namespace's components (default: all)")
    p.add_argument("--resources-path", action="append", type=Path, default=[])
    p.add_argument("--config", type=Path)
    p.add_argument(
        "--config-name",
        help="Kubernetes: the dapr.io/config Configuration --config holds (a missing file is "
        "reported as that Configuration missing from --namespace)",
    )
    p.add_argument("--app-port", type=int)
    p.add_argument(
        "--app-protocol", default="http", choices=["http", "grpc", "https", "grpcs", "h2c"]
    )
    p.add_argument("--dapr-http-port", type=int, help="the sidecar's Dapr HTTP port (Envoy)")
    # App-facing `tandem run` flags (README "App-facing flags").
    p.add_argument("--app-channel-socket", help="reach the app through Envoy's listener here")
    p.add_argument(
        "--app-channel-direct",
        action="store_true",
        help="call an HTTP app straight at its port while no Envoy-only setting applies "
        "(the launcher knows every Configuration that applies: it is --config)",
    )
    p.add_argument("--app-max-concurrency", type=int, help="reported in the metadata API")
    p.add_argument("--enable-app-health-check", action="store_true")
    p.add_argument("--app-health-check-path", default="/healthz")
    p.add_argument("--app-health-probe-interval", type=float, default=5.0, help="seconds")
    p.add_argument("--app-health-probe-timeout", type=float, default=500.0, help="milliseconds")
    p.add_argument("--app-health-threshold", type=int, default=3)
    p.add_argument("--app-health-socket", type=Path, help="serve the app's health for Envoy")
    p.add_argument("--node-id", help="this sidecar's node id (its actor placement host id)")
    p.add_argument("--control-plane", help="the control plane's gRPC address (placement)")
    p.add_argument("--actor-forward-socket", help="Envoy's listener for actor calls to owners")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY)
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-as-json", action="store_true", help="JSON lines instead of logfmt")
    p.add_argument("--metrics-socket", type=Path, help="serve GET /metrics here (for Envoy)")
    p.add_argument("--proxy-admin-socket", type=Path, help="Envoy's admin, for its stats")
    p.add_argument(
        "--graceful-shutdown-seconds",
        type=float,
        default=DEFAULT_GRACEFUL_SHUTDOWN,
        help="on SIGTERM, how long in-flight requests get to finish",
    )
    p.add_argument(
        "--supervisor-pid",
        type=int,
        help="the `tandem run` to ask for a graceful stop on the Shutdown API",
    )
    p.add_argument(
        "--worker-index",
        type=int,
        default=0,
        help="0: the owner (default); above: a worker for the stateless API paths only",
    )
    p.add_argument(
        "--worker-metrics-socket",
        action="append",
        type=Path,
        default=[],
        help="the owner: a worker's metrics socket, folded into /metrics",
    )
    a = p.parse_args(argv)
    if a.app_protocol in ("https", "grpcs", "h2c") and not a.app_channel_socket:
        # TLS and h2c to the app are Envoy's (its app channel listener); alone we cannot.
        p.error(f"--app-protocol {a.app_protocol} needs --app-channel-socket")
    setup_logging(a.log_level, "runtime", app_id=a.app_id, as_json=a.log_as_json)
    return RuntimeOptions(
        app_id=a.app_id,
        socket=a.socket,
        home=a.home,
        namespace=a.namespace,
        resources_paths=tuple(a.resources_path),
        config=a.config,
        config_name=a.config_name,
        app_port=a.app_port,
        app_protocol=a.app_protocol,
        max_body_bytes=a.max_body_bytes,
        http_socket=a.http_socket,
        dapr_http_port=a.dapr_http_port,
        app_channel_socket=a.app_channel_socket,
        app_channel_direct=a.app_channel_direct,
        app_max_concurrency=a.app_max_concurrency,
        app_health=AppHealthConfig(
            path=a.app_health_check_path,
            interval=a.app_health_probe_interval,
            timeout=a.app_health_probe_timeout / 1000,
            threshold=a.app_health_threshold,
        )
        if a.enable_app_health_check
        else None,
        app_health_socket=a.app_health_socket,
        graceful_shutdown_seconds=a.graceful_shutdown_seconds,
        node_id=a.node_id,
        control_plane=a.control_plane,
        actor_forward_socket=a.actor_forward_socket,
        metrics_socket=a.metrics_socket,
        supervisor_pid=a.supervisor_pid,
        proxy_admin_socket=a.proxy_admin_socket,
        worker_index=a.worker_index,
        worker_metrics_sockets=tuple(a.worker_metrics_socket),
    )


async def serve(options: RuntimeOptions) -> int:
    runtime = Runtime(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopped.set)
    try:
        await runtime.start()
    except StartupError as exc:
        log.error("runtime failed to start: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            await runtime.stop(grace=0)
        return 2
    await runtime.stopped.wait()
    log.info("runtime stopping")
    await runtime.stop(grace=options.graceful_shutdown_seconds)
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        import uvloop

        return uvloop.run(serve(options))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        return asyncio.run(serve(options))


if __name__ == "__main__":
    gc.freeze()
    gc.enable()
    sys.exit(main())
