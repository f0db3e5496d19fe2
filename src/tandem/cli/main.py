"""The `tandem` command: run, list and stop sidecars on this machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from tandem import __version__
from tandem.cli.home import Home
from tandem.cli.progress import Progress
from tandem.cli.run import API_TRANSPORTS, DEFAULT_API_TRANSPORT, RunOptions, run
from tandem.procs import pid_alive


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tandem", description="Dapr-compatible sidecars on Envoy")
    p.add_argument("--version", action="version", version=f"tandem {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run a sidecar (and optionally an app command)")
    r.add_argument("--app-id", "-a", required=True)
    r.add_argument("--app-port", "-p", type=int)
    r.add_argument("--app-protocol", "-P", default="http", choices=["http", "grpc"])
    r.add_argument("--dapr-http-port", "-H", type=int)
    r.add_argument("--dapr-grpc-port", "-G", type=int)
    r.add_argument(
        "--dapr-internal-port", "--dapr-internal-grpc-port", "-I", type=int, dest="internal_port"
    )
    r.add_argument("--metrics-port", "-M", type=int)
    r.add_argument(
        "--resources-path",
        "--components-path",
        "-d",
        action="append",
        type=Path,
        default=[],
        dest="resources_path",
    )
    r.add_argument("--config", "-c", type=Path)
    r.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warn", "warning", "error"]
    )
    r.add_argument(
        "--namespace",
        default=os.environ.get("NAMESPACE") or None,
        help="load only this namespace's components (default: $NAMESPACE; unset: load all)",
    )
    r.add_argument("--dapr-http-max-request-size", type=int, default=4, help="MB (default 4)")
    r.add_argument(
        "--api-transport",
        default=DEFAULT_API_TRANSPORT,
        choices=API_TRANSPORTS,
        help="how Envoy hands the Dapr HTTP API to the runtime: HTTP/1.1 over a Unix socket "
        f"or ext_proc (default {DEFAULT_API_TRANSPORT})",
    )
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS…")

    ls = sub.add_parser("list", help="list the sidecars running on this machine")
    ls.add_argument("--output", "-o", default="table", choices=["table", "json"])

    st = sub.add_parser("stop", help="stop a sidecar started by `tandem run`")
    st.add_argument("--app-id", "-a", required=True)
    return p


def _running_apps(home: Home) -> list[dict[str, object]]:
    apps: list[dict[str, object]] = []
    if not home.apps_dir.is_dir():
        return apps
    for f in sorted(home.apps_dir.glob("*.json")):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("pid"), int) and pid_alive(data["pid"]):
            apps.append(data)
        else:
            f.unlink(missing_ok=True)  # left behind by a sidecar that was killed
    return apps


def _age(started: object) -> str:
    if not isinstance(started, (int, float)):
        return "-"
    s = int(time.time() - started)
    return f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m{s % 60}s"


def cmd_list(home: Home, output: str) -> int:
    apps = _running_apps(home)
    if output == "json":
        print(json.dumps(apps, indent=2))
        return 0
    cols = [
        "APP ID",
        "HTTP PORT",
        "GRPC PORT",
        "APP PORT",
        "INTERNAL PORT",
        "METRICS PORT",
        "PID",
        "AGE",
        "COMMAND",
    ]
    rows = [
        [
            str(a.get("app_id", "")),
            str(a.get("http_port", "")),
            str(a.get("grpc_port", "")),
            str(a.get("app_port") or ""),
            str(a.get("internal_port", "")),
            str(a.get("metrics_port", "")),
            str(a.get("pid", "")),
            _age(a.get("started")),
            str(a.get("command", "")),
        ]
        for a in apps
    ]
    if not rows:
        print("No Tandem sidecars are running.")
        return 0
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    for line in [cols, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0


def cmd_stop(home: Home, app_id: str, timeout: float = 15.0) -> int:
    for app in _running_apps(home):
        if app.get("app_id") == app_id:
            pid = int(app["pid"])  # type: ignore[call-overload]
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.05)
            if pid_alive(pid):
                print(
                    f"tandem: {app_id} (pid {pid}) did not stop within {timeout:.0f}s",
                    file=sys.stderr,
                )
                return 1
            print(f"tandem: stopped {app_id}")
            return 0
    print(f"tandem: no running sidecar with app id {app_id}", file=sys.stderr)
    return 1


def _run_options(a: argparse.Namespace) -> RunOptions:
    command = list(a.command)
    if command and command[0] == "--":
        command = command[1:]
    return RunOptions(
        app_id=a.app_id,
        command=tuple(command),
        app_port=a.app_port,
        app_protocol=a.app_protocol,
        http_port=a.dapr_http_port,
        grpc_port=a.dapr_grpc_port,
        internal_port=a.internal_port,
        metrics_port=a.metrics_port,
        resources_paths=tuple(a.resources_path),
        config=a.config,
        log_level=a.log_level,
        namespace=a.namespace,
        max_body_mb=a.dapr_http_max_request_size,
        api_transport=a.api_transport,
    )


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    home = Home.from_env()
    if a.cmd == "list":
        return cmd_list(home, a.output)
    if a.cmd == "stop":
        return cmd_stop(home, a.app_id)
    options = _run_options(a)
    return asyncio.run(run(options, home, Progress(app_id=options.app_id)))


if __name__ == "__main__":
    sys.exit(main())
