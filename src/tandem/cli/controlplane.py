"""Find the machine's control plane, or start one detached from every sidecar."""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tandem.cli.home import Home
from tandem.procs import pid_alive
from tandem.xds.record import read_info, stopping_path


@dataclass(frozen=True, slots=True)
class ControlPlane:
    pid: int
    ads_address: str
    started_here: bool


class ControlPlaneError(Exception):
    pass


def _reachable(address: str) -> bool:
    try:
        if address.startswith("unix:"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(address.removeprefix("unix:"))
                return True
        host, _, port = address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


def live_sidecar_pids(home: Home) -> list[int]:
    """The `tandem run`s whose records say they are serving a sidecar right now."""
    pids = []
    for record in sorted(home.apps_dir.glob("*.json")) if home.apps_dir.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            pid = json.loads(record.read_text()).get("pid")
            if isinstance(pid, int) and pid_alive(pid):
                pids.append(pid)
    return pids


def mark_stopping(home: Home) -> None:
    """A deliberate stop: watchers leave the control plane down until a new `tandem run`."""
    stopping_path(home.root).touch(mode=0o600)


def stopping(home: Home) -> bool:
    return stopping_path(home.root).exists()


def clear_dead_record(home: Home) -> None:
    """Under the start lock: drop ``controlplane.json`` if its process is gone."""
    with open(home.controlplane_lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = read_info(home.root)
        if info is not None and not pid_alive(info.pid):
            home.controlplane_file.unlink(missing_ok=True)


def read_running(home: Home) -> ControlPlane | None:
    info = read_info(home.root)
    if info is not None and pid_alive(info.pid) and _reachable(info.ads_address):
        return ControlPlane(info.pid, info.ads_address, started_here=False)
    return None


def ensure_running(home: Home, log_level: str = "info", timeout: float = 20.0) -> ControlPlane:
    """Reuse the running control plane; otherwise start one in its own session (clearing
    a deliberate stop's mark: a new `tandem run` wants a control plane).

    A file lock serialises concurrent `tandem run`s so exactly one control plane starts.
    """
    running = _ensure(home, log_level, timeout, restart=False)
    assert running is not None
    return running


def restart_if_gone(home: Home, timeout: float = 20.0) -> ControlPlane | None:
    """For a watcher that found the control plane dead: start it again unless the home is
    marked stopping (then None). Another watcher may have been first: then it is reused."""
    return _ensure(home, "info", timeout, restart=True)


def _ensure(home: Home, log_level: str, timeout: float, restart: bool) -> ControlPlane | None:
    home.ensure()
    with open(home.controlplane_lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running = read_running(home)
        if running is not None:
            return running
        home.controlplane_file.unlink(missing_ok=True)
        if restart and stopping(home):
            return None
        stopping_path(home.root).unlink(missing_ok=True)
        log_path = home.logs_dir / "controlplane.log"
        awaited = ",".join(str(pid) for pid in live_sidecar_pids(home))
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tandem.xds",
                    "--home",
                    str(home.root),
                    "--log-level",
                    log_level,
                    "--await-pids",
                    awaited,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # outlives the `tandem run` that started it
                close_fds=True,
                umask=0o077,  # its CA files, socket and log are the owner's alone
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = read_running(home)
            if running is not None:
                return ControlPlane(running.pid, running.ads_address, started_here=True)
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"the control plane exited with code {proc.returncode}; see {log_path}:\n"
                    + _tail(log_path)
                )
            time.sleep(0.01)
        proc.kill()
        raise ControlPlaneError(
            f"the control plane did not start within {timeout:.0f}s; see {log_path}"
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
