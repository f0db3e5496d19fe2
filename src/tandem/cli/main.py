"""The `tandem` command: run, list and stop sidecars on this machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from tandem import __version__
from tandem.cli import app_side
from tandem.cli import workflows as workflow_cli
from tandem.cli.actors import cmd_actors_list
from tandem.cli.appid import new_app_id
from tandem.cli.home import Home
from tandem.cli.progress import Progress
from tandem.cli.run import (
    API_TRANSPORTS,
    DEFAULT_API_TRANSPORT,
    DEFAULT_GRACEFUL_SHUTDOWN_SECONDS,
    RunOptions,
    run,
)
from tandem.cli.supervise import control_plane_summary, links
from tandem.procs import pid_alive


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tandem", description="Dapr-compatible sidecars on Envoy")
    p.add_argument("--version", action="version", version=f"tandem {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run a sidecar (and optionally an app command)")
    r.add_argument("--app-id", "-a", help="default: a generated id, as `dapr run` makes")
    r.add_argument("--app-port", "-p", type=int)
    r.add_argument(
        "--app-protocol", "-P", default="http", choices=["http", "grpc", "https", "grpcs", "h2c"]
    )
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
        "--log-level",
        default="info",
        choices=["debug", "info", "warn", "warning", "error", "fatal", "panic"],
    )
    r.add_argument(
        "--log-as-json", action="store_true", help="the runtime logs JSON lines (Dapr's flag)"
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
    app_side.add_arguments(r)
    _add_dapr_run_flags(r)
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS…")

    ls = sub.add_parser("list", help="list the sidecars running on this machine")
    ls.add_argument("--output", "-o", default="table", choices=["table", "json"])

    ac = sub.add_parser("actors", help="live actors: where each is, and its reminders")
    ac_sub = ac.add_subparsers(dest="actors_cmd", required=True)
    al = ac_sub.add_parser("list", help="list live actors and their reminders")
    al.add_argument("--type", default="", help="only actors of this type")
    al.add_argument("--output", "-o", default="table", choices=["table", "json"])

    workflow_cli.add_arguments(sub)

    st = sub.add_parser("stop", help="stop a sidecar started by `tandem run`")
    st.add_argument("--app-id", "-a", required=True)
    return p


def _add_dapr_run_flags(r: argparse.ArgumentParser) -> None:
    """`dapr run` flags beyond the basics: honoured, or accepted with a note (see README,
    "Coming from `dapr run`")."""
    r.add_argument(
        "--dapr-graceful-shutdown-seconds",
        type=float,
        default=DEFAULT_GRACEFUL_SHUTDOWN_SECONDS,
        help="on SIGTERM (or `tandem stop`), how long the app and in-flight requests get to "
        f"finish before they are stopped (default {DEFAULT_GRACEFUL_SHUTDOWN_SECONDS:g})",
    )
    r.add_argument("--placement-host-address", help="accepted for Dapr; Tandem ignores it")
    r.add_argument("--scheduler-host-address", help="accepted for Dapr; Tandem ignores it")
    r.add_argument("--run-file", "-f", help="multi-app run file: not supported yet")
    r.add_argument(
        "--max-body-size",
        type=_mebibytes,
        help="largest request body, as `dapr run` takes it (e.g. 4Mi); whole MiB only",
    )


_QUANTITY = re.compile(r"(\d+)(Ki|Mi|Gi|k|M|G)?")
_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}


def _mebibytes(text: str) -> int:
    """A size as Dapr writes it (``4Mi``; a bare number is bytes) in whole MiB."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 4Mi")
    size = int(match.group(1)) * _UNITS[match.group(2)]
    if size <= 0 or size % (1 << 20):
        raise argparse.ArgumentTypeError(f"{text!r}: Tandem takes whole MiB (such as 4Mi, 16Mi)")
    return size >> 20


# Flags Tandem accepts so a `dapr run` command line works unchanged, and why they have no effect.
_IGNORED_FLAGS = {
    "placement_host_address": (
        "--placement-host-address",
        "Tandem has no separate placement service; its control plane does this",
    ),
    "scheduler_host_address": (
        "--scheduler-host-address",
        "Tandem has no separate scheduler service; its control plane does this",
    ),
}


def _ignored_flag_notes(a: argparse.Namespace) -> list[str]:
    return [
        f"{flag} {getattr(a, dest)!r} ignored: {why}"
        for dest, (flag, why) in _IGNORED_FLAGS.items()
        if getattr(a, dest) is not None
    ]


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


def _config_version(run_dir: object) -> str | None:
    """The version of the resources the sidecar's runtime last applied (hot reload)."""
    if not isinstance(run_dir, str):
        return None
    try:
        data = json.loads((Path(run_dir) / "config-version.json").read_text())
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _age(started: object) -> str:
    if not isinstance(started, (int, float)):
        return "-"
    s = int(time.time() - started)
    return f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m{s % 60}s"


def cmd_list(home: Home, output: str) -> int:
    apps = _running_apps(home)
    for app, link in zip(apps, asyncio.run(links(apps)), strict=True):
        app["control_plane"] = link
        app["config_version"] = _config_version(app.get("run_dir"))
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
        "CONTROL PLANE",
        "CONFIG",
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
            str(a.get("control_plane", "")),
            str(a.get("config_version") or "-"),
            _age(a.get("started")),
            str(a.get("command", "")),
        ]
        for a in apps
    ]
    if not rows:
        print("No Tandem sidecars are running.")
        return 0
    print(control_plane_summary(home))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    for line in [cols, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0


def cmd_stop(home: Home, app_id: str, timeout: float = 15.0) -> int:
    for app in _running_apps(home):
        if app.get("app_id") == app_id:
            pid = int(app["pid"])  # type: ignore[call-overload]
            os.kill(pid, signal.SIGTERM)
            grace = app.get("graceful_shutdown_seconds")
            if isinstance(grace, (int, float)):
                timeout += grace  # the sidecar may drain that long first
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


def _run_options(a: argparse.Namespace, app_id: str) -> RunOptions:
    command = list(a.command)
    if command and command[0] == "--":
        command = command[1:]
    return RunOptions(
        app_id=app_id,
        command=tuple(command),
        app_port=a.app_port,
        app_protocol=a.app_protocol,
        http_port=a.dapr_http_port,
        grpc_port=a.dapr_grpc_port,
        internal_port=a.internal_port,
        metrics_port=a.metrics_port,
        resources_paths=tuple(a.resources_path),
        config=a.config,
        # Dapr's two top levels: only what stops the sidecar ("critical" to Python and Envoy).
        log_level="critical" if a.log_level in ("fatal", "panic") else a.log_level,
        log_as_json=a.log_as_json,
        namespace=a.namespace,
        max_body_mb=a.max_body_size or a.dapr_http_max_request_size,
        api_transport=a.api_transport,
        app_flags=app_side.AppSideOptions.from_args(a),
        graceful_shutdown_seconds=a.dapr_graceful_shutdown_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    home = Home.from_env()
    if a.cmd == "list":
        return cmd_list(home, a.output)
    if a.cmd == "stop":
        return cmd_stop(home, a.app_id)
    if a.cmd == "actors":
        return cmd_actors_list(home.root, _running_apps(home), a.type, a.output)
    if a.cmd == "workflow":
        return workflow_cli.run(a, _running_apps(home))
    if a.run_file is not None:
        print(
            f"tandem: --run-file {a.run_file}: multi-app run files are not supported yet; "
            "start each app with its own `tandem run --app-id ID ... -- COMMAND`",
            file=sys.stderr,
        )
        return 1
    if a.dapr_graceful_shutdown_seconds < 0:
        print("tandem: --dapr-graceful-shutdown-seconds must be 0 or more", file=sys.stderr)
        return 2
    app_id = a.app_id or new_app_id(
        lambda candidate: any(app.get("app_id") == candidate for app in _running_apps(home))
    )
    options = _run_options(a, app_id)
    progress = Progress(app_id=options.app_id)
    for note in _ignored_flag_notes(a):
        progress.warn(note)
    return asyncio.run(run(options, home, progress))


if __name__ == "__main__":
    sys.exit(main())
