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
from tandem.cli.appid import new_app_id
from tandem.cli.controlplane import mark_stopping
from tandem.cli.home import Home
from tandem.cli.progress import Progress
from tandem.cli.records import config_version, running_apps
from tandem.cli.run import (
    API_TRANSPORTS,
    DEFAULT_API_TRANSPORT,
    DEFAULT_GRACEFUL_SHUTDOWN_SECONDS,
    RunOptions,
    run,
)
from tandem.cli.supervise import control_plane_summary, links
from tandem.cli.workers import DEFAULT_WORKERS, worker_count
from tandem.k8s.cli import add_parser as add_injector_parser
from tandem.k8s.cli import run as run_injector
from tandem.procs import pid_alive
from tandem.xds.record import read_info


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
    r.add_argument(
        "--runtime-workers",
        type=worker_count,
        default=DEFAULT_WORKERS,
        help="runtime processes; above 1, the stateless API paths (state, publish, bindings, "
        "...) spread over them and the rest stays with the first (default 1)",
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

    jb = sub.add_parser("jobs", help="jobs of the Jobs API, with their next fire time")
    jb_sub = jb.add_subparsers(dest="jobs_cmd", required=True)
    jl = jb_sub.add_parser("list", help="list the jobs the scheduler keeps")
    jl.add_argument("--app-id", "-a", default="", help="only this app's jobs")
    jl.add_argument("--output", "-o", default="table", choices=["table", "json"])

    status = sub.add_parser("status", help="the control plane and the sidecars on this machine")
    status.add_argument("--output", "-o", default="table", choices=["table", "json"])

    lg = sub.add_parser("logs", help="an app's runtime (or Envoy) log")
    lg.add_argument("--app-id", "-a", required=True)
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    lg.add_argument("--kind", default="runtime", choices=["runtime", "envoy"])

    ver = sub.add_parser("version", help="Tandem's version and the Dapr API it speaks")
    ver.add_argument("--output", "-o", default="table", choices=["table", "json"])

    dash = sub.add_parser("dashboard", help="a web UI of this machine's mesh")
    dash.add_argument("--port", "-p", type=int, default=8080, help="default 8080, as Dapr's")

    comp = sub.add_parser("completion", help="print a shell completion script")
    comp.add_argument("shell", choices=["bash", "zsh", "tcsh"])

    st = sub.add_parser("stop", help="stop sidecars started by `tandem run`")
    which = st.add_mutually_exclusive_group(required=True)
    which.add_argument("--app-id", "-a")
    which.add_argument(
        "--run-file", "-f", nargs="?", const=".", help="every app of a multi-app run template"
    )
    which.add_argument(
        "--all", action="store_true", help="every sidecar on this machine and the control plane"
    )
    add_injector_parser(sub)
    workflow_cli.add_arguments(sub)
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
    r.add_argument(
        "--run-file",
        "-f",
        nargs="?",
        const=".",
        help="a multi-app run template (Dapr's), or a folder holding dapr.yaml (default: .)",
    )
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


def _age(started: object) -> str:
    if not isinstance(started, (int, float)):
        return "-"
    s = int(time.time() - started)
    return f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m{s % 60}s"


def cmd_list(home: Home, output: str) -> int:
    apps = running_apps(home)
    for app, link in zip(apps, asyncio.run(links(apps)), strict=True):
        app["control_plane"] = link
        app["config_version"] = config_version(app.get("run_dir"))
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
    return stop_apps(home, [app_id], timeout)


def stop_apps(home: Home, app_ids: list[str], timeout: float = 15.0) -> int:
    """SIGTERM every named sidecar at once, then wait for each (its graceful period more)."""
    running = {str(app.get("app_id")): app for app in running_apps(home)}
    code = 0
    stopping: list[tuple[str, int, float]] = []
    for app_id in app_ids:
        app = running.get(app_id)
        if app is None:
            print(f"tandem: no running sidecar with app id {app_id}", file=sys.stderr)
            code = 1
            continue
        pid = int(app["pid"])  # type: ignore[call-overload]
        os.kill(pid, signal.SIGTERM)
        grace = app.get("graceful_shutdown_seconds")
        # The sidecar may drain its graceful period first.
        limit = timeout + (grace if isinstance(grace, (int, float)) else 0)
        stopping.append((app_id, pid, time.monotonic() + limit))
    for app_id, pid, deadline in stopping:
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
        if pid_alive(pid):
            print(f"tandem: {app_id} (pid {pid}) did not stop in time", file=sys.stderr)
            code = 1
        else:
            print(f"tandem: stopped {app_id}")
    return code


def _info(home: Home, a: argparse.Namespace) -> int:
    from tandem.cli import info

    if a.cmd == "version":
        return info.cmd_version(a.output)
    if a.cmd == "completion":
        import shtab

        print(shtab.complete(_parser(), shell=a.shell))
        return 0
    if a.cmd == "logs":
        try:
            return info.cmd_logs(home, a.app_id, a.kind, a.follow)
        except KeyboardInterrupt:
            return 0
    apps = running_apps(home)
    report = info.status(home, apps, asyncio.run(links(apps)))
    return info.cmd_status(home, report, a.output)


def _multi_app_run(home: Home, given: str) -> int:
    from tandem.cli.multirun import run_file
    from tandem.cli.runfile import RunFileError, load

    try:
        template = load(given)
    except RunFileError as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_file(template, home))


def _stop(home: Home, a: argparse.Namespace) -> int:
    if a.app_id is not None:
        return cmd_stop(home, a.app_id)
    if a.run_file is not None:
        from tandem.cli.runfile import RunFileError, load

        try:
            template = load(a.run_file)
        except RunFileError as exc:
            print(f"tandem: {exc}", file=sys.stderr)
            return 2
        running = {app.get("app_id") for app in running_apps(home)}
        return stop_apps(home, [a.app_id for a in template.apps if a.app_id in running])
    return cmd_stop_all(home)


def cmd_stop_all(home: Home, timeout: float = 15.0) -> int:
    """Every sidecar, then the control plane (marked stopped, so no watcher restarts it)."""
    code = stop_apps(home, [str(app.get("app_id")) for app in running_apps(home)])
    mark_stopping(home)
    info = read_info(home.root)
    if info is None or not pid_alive(info.pid):
        print("tandem: the control plane is not running")
        return code
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(info.pid):
        time.sleep(0.05)
    if pid_alive(info.pid):
        print(f"tandem: the control plane (pid {info.pid}) did not stop", file=sys.stderr)
        return 1
    print(f"tandem: stopped the control plane (pid {info.pid})")
    return code


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
        runtime_workers=a.runtime_workers,
    )


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    home = Home.from_env()
    if a.cmd == "list":
        return cmd_list(home, a.output)
    if a.cmd == "stop":
        return _stop(home, a)
    if a.cmd in ("status", "logs", "version", "completion"):
        return _info(home, a)
    if a.cmd == "dashboard":
        from tandem.dashboard.server import serve

        serve(home, a.port)
        return 0
    if a.cmd == "actors":
        from tandem.cli.actors import cmd_actors_list  # the actor stack: only for this command

        return cmd_actors_list(home.root, running_apps(home), a.type, a.output)
    if a.cmd == "injector":
        return run_injector(a)
    if a.cmd == "jobs":
        from tandem.cli.jobs import cmd_jobs_list

        return cmd_jobs_list(home.root, a.app_id, a.output)
    if a.cmd == "workflow":
        return workflow_cli.run(a, running_apps(home))
    if a.run_file is not None:
        return _multi_app_run(home, a.run_file)
    if a.dapr_graceful_shutdown_seconds < 0:
        print("tandem: --dapr-graceful-shutdown-seconds must be 0 or more", file=sys.stderr)
        return 2
    app_id = a.app_id or new_app_id(
        lambda candidate: any(app.get("app_id") == candidate for app in running_apps(home))
    )
    options = _run_options(a, app_id)
    progress = Progress(app_id=options.app_id)
    for note in _ignored_flag_notes(a):
        progress.warn(note)
    return asyncio.run(run(options, home, progress))


if __name__ == "__main__":
    sys.exit(main())
