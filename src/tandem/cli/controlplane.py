"""Find the machine's control plane, or start one detached from every sidecar."""

from __future__ import annotations

import fcntl
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tandem.cli.home import Home
from tandem.procs import pid_alive
from tandem.xds.controlplane import read_info


@dataclass(frozen=True, slots=True)
class ControlPlane:
    pid: int
    ads_address: str
    started_here: bool


class ControlPlaneError(Exception):
    pass


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def read_running(home: Home) -> ControlPlane | None:
    info = read_info(home.root)
    if info is not None and pid_alive(info.pid) and _reachable(info.ads_address):
        return ControlPlane(info.pid, info.ads_address, started_here=False)
    return None


def ensure_running(home: Home, log_level: str = "info", timeout: float = 20.0) -> ControlPlane:
    """Reuse the running control plane; otherwise start one in its own session.

    A file lock serialises concurrent `tandem run`s so exactly one control plane starts.
    """
    home.ensure()
    with open(home.controlplane_lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running = read_running(home)
        if running is not None:
            return running
        home.controlplane_file.unlink(missing_ok=True)
        log_path = home.logs_dir / "controlplane.log"
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
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # outlives the `tandem run` that started it
                close_fds=True,
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
            time.sleep(0.05)
        proc.kill()
        raise ControlPlaneError(
            f"the control plane did not start within {timeout:.0f}s; see {log_path}"
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
