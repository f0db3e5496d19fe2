"""`tandem run`: start (or reuse) the control plane, then the runtime and Envoy; run the app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tandem.cli import app_side, observability, ports
from tandem.cli.children import Child, NotReady
from tandem.cli.controlplane import ControlPlane, ControlPlaneError, ensure_running, read_running
from tandem.cli.exits import describe_exit
from tandem.cli.home import Home
from tandem.cli.probe import http_status
from tandem.cli.progress import Progress
from tandem.cli.workers import RuntimeWorkers, WorkersError, worker_sockets
from tandem.xds.record import ads_socket_path

# daprd's default for --dapr-graceful-shutdown-seconds.
DEFAULT_GRACEFUL_SHUTDOWN_SECONDS = 5.0
# After the graceful period, how long a child gets between SIGTERM and SIGKILL.
_STOP_MARGIN = 5.0
# How Envoy hands the Dapr HTTP API to the runtime: HTTP/1.1 to its HTTP socket, or ext_proc.
API_TRANSPORTS = ("http", "ext_proc")
DEFAULT_API_TRANSPORT = "http"
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True, slots=True)
class RunOptions:
    app_id: str
    command: tuple[str, ...] = ()
    app_port: int | None = None
    app_protocol: str = "http"
    http_port: int | None = None
    grpc_port: int | None = None
    internal_port: int | None = None
    metrics_port: int | None = None
    resources_paths: tuple[Path, ...] = ()
    config: Path | None = None
    log_level: str = "info"
    log_as_json: bool = False  # the runtime's log lines: Dapr's text shape, or JSON
    # None (NAMESPACE unset, as under `dapr run`): every component loads, identity uses "default".
    namespace: str | None = None
    max_body_mb: int = 4
    ready_timeout: float = 30.0
    api_transport: str = DEFAULT_API_TRANSPORT
    # App-facing flags (health checks, max concurrency, Unix sockets, API logging).
    app_flags: app_side.AppSideOptions = app_side.AppSideOptions()
    # `dapr run` compatibility flags (see main._add_dapr_run_flags).
    graceful_shutdown_seconds: float = DEFAULT_GRACEFUL_SHUTDOWN_SECONDS
    # Runtime processes; above 1, workers serve the stateless API paths (cli/workers.py).
    runtime_workers: int = 1


@dataclass(slots=True)
class Ports:
    http: int
    grpc: int
    internal: int
    metrics: int


class RunError(Exception):
    """Start-up failed; the message says what and where to look."""


class _EnvoyConfigStep:
    """``python -m tandem.cli.envoy_config``: writes envoy.json in its own short-lived
    process, so `tandem run`, which lives as long as the app, never loads what that takes
    (key generation, the resource parsers, secret stores). It starts at once and waits for
    :meth:`control_plane` only where it needs the control plane (a cold start)."""

    def __init__(self, proc: asyncio.subprocess.Process, path: Path) -> None:
        self.proc = proc
        self._path = path
        assert proc.stdout is not None and proc.stderr is not None
        self._out = asyncio.ensure_future(proc.stdout.read())
        self._err = asyncio.ensure_future(proc.stderr.read())

    @classmethod
    async def start(cls, request: dict[str, object]) -> _EnvoyConfigStep:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tandem.cli.envoy_config",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        return cls(proc, Path(str(request["run_dir"])) / "envoy.json")

    def control_plane(self, ads_address: str) -> None:
        """The control plane answers at ``ads_address``: the step may enrol and finish."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # it failed already: result() says why
            self.proc.stdin.write(json.dumps({"ads_address": ads_address}).encode() + b"\n")
            self.proc.stdin.close()

    async def result(self) -> Path:
        """envoy.json's path, once written; RunError with the step's reason otherwise."""
        out, err = await asyncio.gather(self._out, self._err)
        await self.proc.wait()
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else {}
        except ValueError:
            answer = {}
        if self.proc.returncode == 0 and answer.get("ok"):
            return self._path
        reason = answer.get("error") or (
            f"making Envoy's configuration failed ({describe_exit(self.proc.returncode)}):\n"
            + "\n".join(err.decode(errors="replace").strip().splitlines()[-20:])
        )
        raise RunError(str(reason))

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self._out.cancel()
        self._err.cancel()


@dataclass(slots=True)
class Sidecar:
    options: RunOptions
    home: Home
    progress: Progress
    children: list[Child] = field(default_factory=list)
    run_dir: Path | None = None
    app_file: Path | None = None
    _port_book: ports.PortBook | None = None
    _envoy_config: _EnvoyConfigStep | None = None
    _cp_starting: asyncio.Task[ControlPlane] | None = None
    ports: Ports | None = None
    _runtime_log_start: int = 0
    workers: RuntimeWorkers | None = None  # --runtime-workers N > 1

    def choose_ports(self) -> Ports:
        o = self.options
        book = ports.PortBook(self.home.run_dir / "ports")
        with book.locked():
            taken = book.booked()
            if o.app_port is not None:
                taken.add(o.app_port)
            try:
                chosen = Ports(
                    http=ports.choose(o.http_port, taken, "--dapr-http-port"),
                    grpc=ports.choose(o.grpc_port, taken, "--dapr-grpc-port"),
                    internal=ports.choose(o.internal_port, taken, "--dapr-internal-port"),
                    metrics=ports.choose(o.metrics_port, taken, "--metrics-port"),
                )
            except ports.PortInUseError as exc:
                raise RunError(str(exc)) from exc
            book.book(os.getpid(), (chosen.http, chosen.grpc, chosen.internal, chosen.metrics))
        self._port_book = book
        self.ports = chosen
        return chosen

    def _make_run_dir(self, sidecar_id: str) -> Path:
        run_dir = self.home.run_dir / sidecar_id
        if len(str(run_dir / "runtime.sock")) > _MAX_SOCKET_PATH:
            # Unix socket paths are limited to ~108 bytes; fall back to a short temp dir.
            run_dir = Path(tempfile.mkdtemp(prefix=f"tandem-{sidecar_id[:12]}-", dir="/tmp"))
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    async def start(self) -> Ports:
        o = self.options
        self.home.ensure()
        with self.progress.step("control plane"):
            found = read_running(self.home)
        if found is None:
            # Cold: the runtime imports while the control plane starts, told the address a
            # control plane started by `tandem run` serves (the same across restarts); its
            # placement stream retries until it answers.
            # The control plane is shared by every sidecar: it keeps its own log level.
            self._cp_starting = asyncio.create_task(asyncio.to_thread(ensure_running, self.home))
            ads_address = f"unix:{ads_socket_path(self.home.root)}"
        else:
            self._control_plane_found(found)
            ads_address = found.ads_address
        chosen = self.choose_ports()
        resources = o.resources_paths or (self.home.ensure_default_resources(),)
        for path in resources:
            if not path.exists():
                raise RunError(f"--resources-path {path}: no such file or directory")
        if o.config is not None and not o.config.is_file():
            raise RunError(f"--config {o.config}: no such file")

        sidecar_id = f"{o.app_id}-{secrets.token_hex(4)}"
        self.run_dir = self._make_run_dir(sidecar_id)
        runtime_socket = self.run_dir / "runtime.sock"
        # The runtime's HTTP/1.1 door: the API (api_transport http), a gRPC app's translated
        # HTTP invocations and actor calls forwarded by other sidecars all arrive there, so
        # every sidecar has it whatever the API transport.
        http_socket = self.run_dir / "runtime-http.sock"
        actor_forward_socket = self.run_dir / "actor-forward.sock"
        admin_socket = self.run_dir / "admin.sock"
        logs = self.home.logs_dir
        # --- App-facing flags (cli/app_side.py) ---
        try:
            api_log = app_side.api_log(o.app_flags, o.config, logs, o.app_id)
            app_side.prepare(o.app_flags, o.app_id, api_log, self.run_dir)
        except app_side.AppSideError as exc:
            raise RunError(str(exc)) from exc

        # Holds the private key and (in envoy.json) the credential and tokens.
        self.run_dir.chmod(0o700)
        # Envoy's bootstrap is made in a short-lived process while the runtime starts.
        envoy_config = self._envoy_config = await _EnvoyConfigStep.start(
            {
                "home": str(self.home.root),
                "run_dir": str(self.run_dir),
                "sidecar_id": sidecar_id,
                "app_id": o.app_id,
                "namespace": o.namespace,
                "config": str(o.config) if o.config is not None else None,
                "resources": [str(p) for p in resources],
                "runtime_socket": str(runtime_socket),
                "admin_socket": str(admin_socket),
                "runtime_http_socket": str(http_socket),
                "worker_sockets": [
                    [str(a), str(b)] for a, b in worker_sockets(self.run_dir, o.runtime_workers)
                ],
                "metadata": self._node_metadata(chosen, api_log, actor_forward_socket),
            }
        )
        if self._cp_starting is None:
            envoy_config.control_plane(ads_address)
        with self.progress.step("runtime"):
            argv = [
                sys.executable,
                "-m",
                "tandem.ext_proc",
                "--app-id",
                o.app_id,
                "--socket",
                str(runtime_socket),
                "--home",
                str(self.home.root),
                "--app-protocol",
                o.app_protocol,
                "--max-body-bytes",
                str(o.max_body_mb << 20),
                "--log-level",
                o.log_level,
                *(["--log-as-json"] if o.log_as_json else []),
                "--graceful-shutdown-seconds",
                str(o.graceful_shutdown_seconds),
            ]
            if o.namespace:
                argv += ["--namespace", o.namespace]
            for path in resources:
                argv += ["--resources-path", str(path)]
            if o.config is not None:
                argv += ["--config", str(o.config)]
            if o.app_port is not None:
                # Every Configuration of this sidecar is --config, which the runtime follows.
                argv += ["--app-port", str(o.app_port), "--app-channel-direct"]
            if http_socket is not None:
                argv += ["--http-socket", str(http_socket)]
            argv += ["--dapr-http-port", str(chosen.http)]
            # Actors: placement and reminders at the control plane, calls to other owners
            # through this sidecar's Envoy.
            argv += ["--node-id", sidecar_id, "--control-plane", ads_address]
            argv += ["--actor-forward-socket", str(actor_forward_socket)]
            argv += ["--supervisor-pid", str(os.getpid())]
            argv += app_side.runtime_args(o.app_flags, self.run_dir, o.app_port)
            argv += observability.runtime_args(self.run_dir, admin_socket)
            if o.runtime_workers > 1:
                self.workers = RuntimeWorkers(
                    tuple(argv), self.run_dir, logs, o.app_id, o.runtime_workers
                )
                argv += self.workers.owner_args()
            runtime_log = logs / f"{o.app_id}.runtime.log"
            # The log is appended to across runs: this run's start-up warnings begin here.
            self._runtime_log_start = runtime_log.stat().st_size if runtime_log.exists() else 0
            runtime = await Child.start("runtime", argv, log_path=runtime_log)
            self.children.append(runtime)
        if self._cp_starting is not None:
            cp = await self._control_plane_started(self._cp_starting)
            if cp.ads_address != ads_address:
                # Another control plane (on TCP) won the start: the runtime must follow it.
                await runtime.stop()
                self.children.remove(runtime)
                argv[argv.index(ads_address)] = cp.ads_address
                runtime = await Child.start("runtime", argv, log_path=runtime_log)
                self.children.append(runtime)
            envoy_config.control_plane(cp.ads_address)

        async def runtime_ready() -> None:
            await self._wait_for(runtime_socket.exists, runtime, "the runtime socket")
            await self._wait_for(http_socket.exists, runtime, "the runtime HTTP socket")
            for path in gates:
                await self._wait_for(path.exists, runtime, f"the runtime's {path.name}")
            self.progress.done(f"runtime ready (pid {runtime.proc.pid}, log {runtime.log_path})")
            if self.workers is not None:
                with self.progress.step("runtime workers"):
                    try:
                        await self.workers.start()
                    except WorkersError as exc:
                        raise RunError(str(exc)) from exc
                self.progress.done(f"runtime workers ready (pids {self.workers.pids()})")

        # Envoy starts while the runtime imports and loads its components: until the
        # runtime's sockets exist Envoy answers 503, and nothing calls it before this
        # start returns. Not when Envoy health-checks a runtime socket (the app's health
        # through the runtime, the workers' cluster): a failed first probe would hold
        # calls for a whole interval.
        gates = app_side.runtime_sockets(o.app_flags, self.run_dir, o.app_port)
        sequential = bool(gates) or self.workers is not None
        if sequential:
            await runtime_ready()

        with self.progress.step("envoy"):
            from tandem.envoy import envoy_binary

            config_path = await envoy_config.result()
            envoy = await Child.start(
                "envoy",
                [
                    str(envoy_binary()),
                    "-c",
                    str(config_path),
                    "--disable-hot-restart",
                    "--log-level",
                    "warn" if o.log_level in ("info", "warn", "warning") else o.log_level,
                    "--base-id",
                    str(secrets.randbelow(1 << 30)),
                    # A listener changed by hot reload (access control) must apply to every
                    # connection now: old ones finish their request in flight and close,
                    # rather than keep the old policy for the default 10 minutes.
                    "--drain-strategy",
                    "immediate",
                    "--drain-time-s",
                    "2",
                    *app_side.envoy_args(o.app_flags),
                ],
                log_path=logs / f"{o.app_id}.envoy.log",
            )
            self.children.append(envoy)
            if not sequential:
                await runtime_ready()
            await self._wait_for_health(chosen.http)
            await self._wait_for_listeners(admin_socket)
        self.progress.done(f"envoy ready (pid {envoy.proc.pid}, log {envoy.log_path})")

        self.app_file = self.home.apps_dir / f"{o.app_id}.json"
        record = {
            "app_id": o.app_id,
            "pid": os.getpid(),
            "http_port": chosen.http,
            "grpc_port": chosen.grpc,
            "internal_port": chosen.internal,
            "metrics_port": chosen.metrics,
            "app_port": o.app_port,
            "command": " ".join(o.command),
            "started": time.time(),
            "run_dir": str(self.run_dir),
            "graceful_shutdown_seconds": o.graceful_shutdown_seconds,
            # For the dashboard's access-control and traffic-policy views.
            "config": str(o.config.resolve()) if o.config else None,
            "resources_paths": [str(p.resolve()) for p in o.resources_paths],
        }
        tmp = self.app_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.app_file)
        return chosen

    def _control_plane_found(self, cp: ControlPlane) -> None:
        self.progress.done(
            f"control plane {'started' if cp.started_here else 'running'} "
            f"(pid {cp.pid}, xDS {cp.ads_address})"
        )

    async def _control_plane_started(self, starting: asyncio.Task[ControlPlane]) -> ControlPlane:
        try:
            cp = await starting
        except ControlPlaneError as exc:
            raise RunError(str(exc)) from exc
        self._control_plane_found(cp)
        return cp

    def _node_metadata(
        self, chosen: Ports, api_log: app_side.ApiLog | None, actor_forward_socket: Path
    ) -> dict[str, object]:
        """What `tandem run` itself knows for Envoy's node metadata (the bootstrap step
        adds identity, the resources' invocation documents and the --config's settings)."""
        o = self.options
        assert self.run_dir is not None
        metadata: dict[str, object] = {
            "app_id": o.app_id,
            # Left out when NAMESPACE is unset: resources of every namespace then apply.
            **({"namespace": o.namespace} if o.namespace else {}),
            "app_protocol": o.app_protocol,
            "api_transport": o.api_transport,
            "http_port": chosen.http,
            "grpc_port": chosen.grpc,
            "internal_port": chosen.internal,
            "internal_address": "127.0.0.1",
            "metrics_port": chosen.metrics,
            "max_body_bytes": o.max_body_mb << 20,
            "pid": os.getpid(),
            "actor_forward_socket": str(actor_forward_socket),
            **({"runtime_workers": o.runtime_workers} if o.runtime_workers > 1 else {}),
        }
        if o.app_port is not None:
            metadata["app_port"] = o.app_port
        metadata.update(app_side.node_metadata(o.app_flags, self.run_dir, o.app_port, api_log))
        return metadata

    async def _wait_for(self, ready: Callable[[], bool], child: Child, what: str) -> None:
        try:
            await child.wait_until(ready, what, self.options.ready_timeout)
        except NotReady as exc:
            raise RunError(str(exc)) from exc

    async def _wait_for_health(self, http_port: int) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        last: int | None = None
        while time.monotonic() < deadline:
            for child in self.children:
                if child.exited:
                    raise RunError(
                        f"the {child.name} {describe_exit(child.proc.returncode)} during "
                        f"start-up:\n{child.log_tail()}"
                    )
            # The outbound check, not /v1.0/healthz: full health waits for the app, which
            # only starts after this returns (Dapr's sidecar/app start-up deadlock).
            last = await http_status("127.0.0.1", http_port, "/v1.0/healthz/outbound")
            if last == 204:
                return
            await asyncio.sleep(0.01)
        raise RunError(
            f"the sidecar did not become healthy within {self.options.ready_timeout:.0f}s "
            f"(last /v1.0/healthz/outbound status: {last}); see {self.home.logs_dir}"
        )

    async def _wait_for_listeners(self, admin_socket: Path) -> None:
        """Ready means other sidecars can reach us too: the inbound listener waits for its
        certificate (SDS) after the API listeners are up, and a caller that learnt of us
        in between would get a connect error."""
        from tandem.envoy import AdminError, admin_request

        deadline = time.monotonic() + self.options.ready_timeout
        last = "no answer from Envoy's admin"
        while time.monotonic() < deadline:
            try:
                resp = await admin_request(
                    str(admin_socket),
                    "/stats?format=json&filter=%5Elistener_manager%5C.total_listeners_",
                    timeout=1.0,
                )
                stats = {s["name"]: s.get("value") for s in resp.json().get("stats", [])}
                warming = stats.get("listener_manager.total_listeners_warming")
                active = stats.get("listener_manager.total_listeners_active") or 0
                listeners = await admin_request(
                    str(admin_socket), "/listeners?format=json", timeout=1.0
                )
                names = {e.get("name") for e in listeners.json().get("listener_statuses", [])}
                if warming == 0 and active and "dapr_inbound" in names:
                    return
                last = f"{warming} listener(s) warming, active: {sorted(n for n in names if n)}"
            except (AdminError, ValueError, KeyError) as exc:
                last = str(exc)
            await asyncio.sleep(0.02)
        raise RunError(
            f"the sidecar's inbound listener did not come up within "
            f"{self.options.ready_timeout:.0f}s ({last}); its certificate may have been "
            f"refused: see {self.home.logs_dir / 'controlplane.log'}"
        )

    def startup_warnings(self) -> list[str]:
        """Warnings the runtime logged while starting (components skipped, YAML it cannot
        honour), worded for the console: the person who typed `tandem run` must see them."""
        runtime = next((c for c in self.children if c.name == "runtime"), None)
        if runtime is None or runtime.log_path is None:
            return []
        try:
            with open(runtime.log_path, "rb") as f:
                f.seek(self._runtime_log_start)
                lines = f.read().splitlines()
        except OSError:
            return []
        from tandem.logs import parse_line  # the runtime's log format, read only here

        out = []
        for line in lines:
            entry = parse_line(line)
            if entry is not None and entry.get("level") == "warning":
                out.append(_console_line(entry))
        return out

    def port_booking(self) -> Path:
        assert self._port_book is not None
        return self._port_book.booking(os.getpid())

    async def stop(self) -> None:
        if self._cp_starting is not None:
            # Its thread holds the start lock until the control plane answers or fails.
            await asyncio.gather(self._cp_starting, return_exceptions=True)
        if self._envoy_config is not None:
            self._envoy_config.kill()
        for child in reversed(self.children):
            # The runtime finishes in-flight work for up to the graceful period (it knows it).
            await child.stop(self.options.graceful_shutdown_seconds + _STOP_MARGIN)
        if self.workers is not None:
            await self.workers.stop(self.options.graceful_shutdown_seconds + _STOP_MARGIN)
        if self._port_book is not None:
            self._port_book.release(os.getpid())
        if self.app_file is not None:
            with contextlib.suppress(OSError):
                data = json.loads(self.app_file.read_text())
                if data.get("pid") == os.getpid():
                    self.app_file.unlink()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            app_side.cleanup(self.options.app_flags, self.options.app_id)


_LOG_PLUMBING = frozenset(
    {"time", "level", "component", "scope", "msg", "error", "app_id", "trace_id"}
)


def _console_line(entry: dict[str, object]) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in _LOG_PLUMBING)
    return f"{entry.get('msg', '')}" + (f" ({fields})" if fields else "")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _watched_children(sidecar: Sidecar) -> list[dict[str, object]]:
    """The children the watcher keeps, in start order (it stops them in reverse): runtime
    workers right after the runtime, so Envoy stops before them."""
    out: list[dict[str, object]] = []
    for c in sidecar.children:
        out.append(
            {
                "name": c.name,
                "pid": c.proc.pid,
                "log_path": str(c.log_path) if c.log_path is not None else None,
                "log_offset": c.log_offset,
                "returncode": c.proc.returncode,
            }
        )
        if c.name == "runtime" and sidecar.workers is not None:
            out += sidecar.workers.for_watcher()
    return out


def _become_watcher(sidecar: Sidecar, ready: str, app_umask: int) -> None:
    """Replace this process's image with the small watcher (``tandem.cli.watch``), which
    runs the app and keeps the sidecar for the rest of its life: same pid, same children,
    without the start-up's asyncio, parsers and loaders."""
    o = sidecar.options
    assert sidecar.run_dir is not None
    chosen = sidecar.ports
    assert chosen is not None
    state = {
        "app_id": o.app_id,
        "home": str(sidecar.home.root),
        "ready_line": ready,
        "progress_started": sidecar.progress.started,
        "graceful_shutdown_seconds": o.graceful_shutdown_seconds,
        "stop_margin_seconds": _STOP_MARGIN,
        "children": _watched_children(sidecar),
        "command": list(o.command),
        "app_env": app_environment(o, chosen) if o.command else {},
        "app_umask": app_umask,
        "port_booking": str(sidecar.port_booking()),
        "app_file": str(sidecar.app_file) if sidecar.app_file is not None else None,
        "run_dir": str(sidecar.run_dir),
        "app_sockets": [str(p) for p in app_side.socket_paths(o.app_flags, o.app_id) or ()],
    }
    path = sidecar.run_dir / "watch.json"
    path.write_text(json.dumps(state))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "tandem.cli.watch", str(path)])


def app_environment(options: RunOptions, chosen: Ports) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DAPR_HTTP_PORT=str(chosen.http),
        DAPR_GRPC_PORT=str(chosen.grpc),
        APP_ID=options.app_id,
        DAPR_METRICS_PORT=str(chosen.metrics),
        APP_PROTOCOL=options.app_protocol,
    )
    if options.app_port is not None:
        env["APP_PORT"] = str(options.app_port)
    return env


async def run(options: RunOptions, home: Home, progress: Progress) -> int:
    sidecar = Sidecar(options, home, progress)
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    # Everything the sidecar writes (databases, WAL files, logs, records, sockets) is the
    # owner's alone; the app keeps the umask it was given.
    app_umask = os.umask(0o077)
    try:
        try:
            chosen = await sidecar.start()
        except RunError as exc:
            progress.fail(str(exc))
            return 1
        for warning in sidecar.startup_warnings():
            progress.warn(warning)
        ready = (
            f"sidecar {options.app_id} ready: HTTP 127.0.0.1:{chosen.http}, "
            f"gRPC 127.0.0.1:{chosen.grpc}, internal {chosen.internal}, "
            f"metrics {chosen.metrics}"
        )
        # A Ctrl-C or `tandem stop` from here on waits, blocked, for the watcher's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        for _ in range(3):
            await asyncio.sleep(0)  # one delivered just before is handled here
        if received:
            return 0  # stopped while starting
        _become_watcher(sidecar, ready, app_umask)
        return 1  # not reached: the exec does not return
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        progress.step_note("stopping sidecar")
        await sidecar.stop()
        os.umask(app_umask)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
