"""Start real `tandem run` processes for end-to-end tests and wait for them properly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tandem.cli.ports import free_port
from tandem.procs import pid_alive

APPS = Path(__file__).resolve().parent.parent / "apps"
# The two front doors of the Dapr HTTP API (`tandem run --api-transport`): every HTTP route
# is tested through both.
TRANSPORTS = ("http", "ext_proc")


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def remove_home(home: Path, timeout: float = 10.0) -> None:
    """Remove a $TANDEM_HOME after its sidecars have stopped, stopping its control plane
    first (`tandem run` leaves it running on purpose). The control plane marks the home as
    it stops, so it is waited for: that mark would otherwise land in a half-removed home,
    which then stays behind."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = json.loads((home / "controlplane.json").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for its exit, with a deadline
    shutil.rmtree(home, ignore_errors=True)


def json_lines(path: Path, **match: object) -> list[dict]:
    """The JSON lines a test app has written to ``path`` so far (none before the file
    exists), those whose fields equal ``match``. A line the app is still writing does not
    parse yet and is left out."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if all(row.get(k) == v for k, v in match.items()):
                rows.append(row)
    return rows


def tandem_cli(
    home: Path, *args: str, check: bool = False, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """`tandem ARGS` on ``home``, run to its end, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli.main", *args],
        env={**os.environ, "TANDEM_HOME": str(home)},
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def run_sdk_app(
    sidecar: Sidecar,
    app: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """The Python SDK app ``app`` run to its end against ``sidecar`` (``DAPR_HTTP_PORT``,
    ``DAPR_GRPC_PORT``; ``env`` adds to them), its output captured as text."""
    return subprocess.run(
        [sys.executable, str(app), *args],
        env={
            **os.environ,
            "DAPR_HTTP_PORT": str(sidecar.http_port),
            "DAPR_GRPC_PORT": str(sidecar.grpc_port),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def workflow_output(client: Any, instance: str, timeout: float) -> object:
    """The output of workflow ``instance`` (a ``DaprWorkflowClient`` asks) once it has
    completed; any other end fails the test, naming how."""
    from dapr.ext.workflow import WorkflowStatus  # only the workflow tests load this

    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=timeout)
    assert state is not None, instance
    assert state.runtime_status == WorkflowStatus.COMPLETED, (
        instance,
        state.runtime_status,
        state.failure_details,
    )
    return json.loads(state.serialized_output)


@dataclass
class Sidecar:
    app_id: str
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    internal_port: int
    output: Path
    home: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def record(self) -> dict:
        return json.loads((self.home / "apps" / f"{self.app_id}.json").read_text())

    def envoy_stats(self) -> dict[str, int]:
        """Counters from this sidecar's Envoy admin (a Unix socket in its run dir)."""
        admin = Path(self.record()["run_dir"]) / "admin.sock"
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin))) as c:
            body = c.get("http://envoy/stats", params={"format": "json"}).json()
        return {s["name"]: s["value"] for s in body["stats"] if "value" in s}

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode


def distinct_free_ports(n: int) -> list[int]:
    """``n`` ports free a moment ago and different from each other: the kernel may hand a
    just-closed port out again, and `tandem run` refuses one port asked for twice."""
    chosen: list[int] = []
    while len(chosen) < n:
        port = free_port()
        if port not in chosen:
            chosen.append(port)
    return chosen


def child_processes(parent: int) -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of each live child of ``parent``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            out.append((int(proc.name), argv))
    return out


def start_sidecar(
    home: Path,
    app_id: str,
    *extra: str,
    command: list[str] | None = None,
    wait: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Sidecar:
    for _ in range(3):
        sidecar = _launch(home, app_id, extra, command, env, cwd)
        if not wait:
            return sidecar
        # A port free a moment ago can be taken before `tandem run` binds it (the kernel
        # hands the same range out for outgoing connections): that start is tried again.
        with contextlib.suppress(PortTaken):
            wait_healthy(sidecar)
            return sidecar
    raise AssertionError(f"tandem run {app_id}: ports taken three times:\n{sidecar.text()}")


def start_app_sidecar(
    home: Path, app_id: str, app: Path, *extra: str, app_args: Sequence[str] = (), **options
) -> Sidecar:
    """:func:`start_sidecar` of ``app_id`` with its app: the Python script ``app`` run with
    a free port (passed to ``--app-port`` too) and then ``app_args`` as its arguments."""
    port = free_port()
    return start_sidecar(
        home,
        app_id,
        "--app-port",
        str(port),
        *extra,
        command=[sys.executable, str(app), str(port), *app_args],
        **options,
    )


def door_app_id(prefix: str, transport: str) -> str:
    """The app id :func:`sidecar_per_door` gives the sidecar of ``transport``."""
    return f"{prefix}-{transport.replace('_', '-')}"


@contextlib.contextmanager
def sidecar_per_door(
    home: Path,
    prefix: str,
    *extra: str,
    per_door: Callable[[str], Sequence[str]] = lambda transport: (),
    **options,
) -> Iterator[dict[str, Sidecar]]:
    """A sidecar for each of :data:`TRANSPORTS`, by transport (app id: :func:`door_app_id`),
    with ``extra`` and ``per_door(transport)`` as further arguments; those started are
    stopped when the block ends."""
    started: dict[str, Sidecar] = {}
    try:
        for transport in TRANSPORTS:
            started[transport] = start_sidecar(
                home,
                door_app_id(prefix, transport),
                "--api-transport",
                transport,
                *extra,
                *per_door(transport),
                **options,
            )
        yield started
    finally:
        for sidecar in started.values():
            sidecar.stop()


def tandem_run_argv(app_id: str, ports: Sequence[int], *extra: str) -> list[str]:
    """`tandem run` of ``app_id`` on ``ports`` (HTTP, gRPC, internal, metrics), then ``extra``."""
    http, grpc, internal, metrics = ports
    return [
        sys.executable,
        "-m",
        "tandem.cli.main",
        "run",
        "--app-id",
        app_id,
        "--dapr-http-port",
        str(http),
        "--dapr-grpc-port",
        str(grpc),
        "--dapr-internal-port",
        str(internal),
        "--metrics-port",
        str(metrics),
        *extra,
    ]


class PortTaken(AssertionError):
    """`tandem run` refused a port that another process took after the test chose it."""


def _launch(
    home: Path,
    app_id: str,
    extra: tuple[str, ...],
    command: list[str] | None,
    env: dict[str, str] | None,
    cwd: Path | None,
) -> Sidecar:
    http_port, grpc_port, internal_port, metrics_port = ports = distinct_free_ports(4)
    output = home / f"{app_id}-{http_port}.out"
    argv = tandem_run_argv(app_id, ports, *extra)
    if command:
        argv += ["--", *command]
    full_env = {**os.environ, "TANDEM_HOME": str(home), **(env or {})}
    with open(output, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    return Sidecar(app_id, proc, http_port, grpc_port, internal_port, output, home)


def wait_healthy(sidecar: Sidecar, timeout: float = 60.0) -> None:
    def healthy() -> bool:
        if sidecar.proc.poll() is not None:
            text = sidecar.text()
            failure = PortTaken if "the port is already in use" in text else AssertionError
            raise failure(f"tandem run {sidecar.app_id} exited early:\n{text}")
        try:
            return httpx.get(f"{sidecar.base}/v1.0/healthz", timeout=1).status_code == 204
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout, f"sidecar {sidecar.app_id} to be healthy")
