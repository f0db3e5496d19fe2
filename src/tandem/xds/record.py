"""The control plane's record on disk (``controlplane.json``: pid, address, start time), its
stop marker and its one address. Light on purpose: `tandem run`, `tandem list` and the
other commands read these without loading the control plane itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INFO_FILE = "controlplane.json"
ADS_SOCKET = "xds.sock"
# Written by a deliberate stop (SIGTERM to the control plane, `tandem stop --all`): the
# `tandem run` watchers then leave the control plane down instead of restarting it.
STOPPING_MARKER = "stopping"
# sun_path is 108 bytes on Linux; stay well under it.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True, slots=True)
class ControlPlaneInfo:
    pid: int
    ads_address: str
    started: float

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "ads_address": self.ads_address, "started": self.started}


def info_path(home: Path) -> Path:
    return home / INFO_FILE


def stopping_path(home: Path) -> Path:
    return home / STOPPING_MARKER


def ads_socket_path(home: Path) -> Path:
    """The control plane's one address, the same across restarts so every Envoy's
    bootstrap keeps pointing at it: ``$TANDEM_HOME/run/xds.sock``, or, when that path is
    too long for a Unix socket, a name derived from the home in a private per-user
    directory (never a shared /tmp name another user could bind first)."""
    inside = home / "run" / ADS_SOCKET
    if len(os.fsencode(inside)) < _MAX_SOCKET_PATH:
        inside.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return inside
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return _private_dir(base / f"tandem-{os.getuid()}") / f"xds-{digest}.sock"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"{path} is not a directory owned by this user; refusing to use it")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_info(home: Path, ads_address: str, pid: int | None = None) -> ControlPlaneInfo:
    """Write ``controlplane.json`` atomically: readers see the old file or the whole new one."""
    info = ControlPlaneInfo(
        pid=os.getpid() if pid is None else pid, ads_address=ads_address, started=time.time()
    )
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".controlplane.", suffix=".tmp", dir=home)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(info.to_json(), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, info_path(home))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return info


def read_info(home: Path) -> ControlPlaneInfo | None:
    """The recorded control plane, or None if there is no readable record."""
    try:
        data = json.loads(info_path(home).read_text())
        return ControlPlaneInfo(
            pid=int(data["pid"]),
            ads_address=str(data["ads_address"]),
            started=float(data["started"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_info(home: Path, pid: int | None = None) -> None:
    """Remove the record, but only if it is ours (a successor may have replaced it)."""
    current = read_info(home)
    if current is not None and current.pid == (os.getpid() if pid is None else pid):
        with contextlib.suppress(FileNotFoundError):
            info_path(home).unlink()
