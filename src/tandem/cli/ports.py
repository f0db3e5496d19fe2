"""Choosing listener ports so sidecars on one machine never collide on a port nobody asked for."""

from __future__ import annotations

import fcntl
import json
import os
import random
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tandem.procs import pid_alive


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Envoy binds: a port whose last connections linger in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _outgoing_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default if unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_listen_port(taken: Iterable[int] = ()) -> int:
    """A free port below the kernel's range for outgoing connections.

    A port is bound a moment after it is chosen; one from that range could meanwhile become
    the local end of any program's outgoing connection, and the bind would fail.
    """
    low, _ = _outgoing_range()
    avoid = set(taken)
    if low > 2048:
        start = max(1024, low - 12768)
        for _ in range(200):
            port = random.randrange(start, low)
            if port not in avoid and is_free(port):
                return port
    while True:  # no room below the range (an odd kernel setting): any free port
        port = free_port()
        if port not in avoid:
            return port


def free_listen_ports(n: int) -> list[int]:
    """``n`` distinct ports from :func:`free_listen_port` (none is bound yet, so each
    choice must avoid the ones before it)."""
    chosen: list[int] = []
    while len(chosen) < n:
        chosen.append(free_listen_port(chosen))
    return chosen


class PortInUseError(Exception):
    pass


_LISTEN = "0A"  # TCP state in /proc/net/tcp


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == _LISTEN
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def holder_of(port: int) -> str | None:
    """Who listens on ``port`` on this machine: ``pid 123 (python app.py)``, when /proc says
    (a process of another user may not be visible)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not sockets:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in sockets:
                    cmd = (
                        (proc / "cmdline")
                        .read_bytes()
                        .replace(b"\0", b" ")
                        .decode(errors="replace")
                    )
                    return f"pid {proc.name} ({' '.join(cmd.split())[:80]})"
        except OSError:
            continue
    return None


def choose(requested: int | None, taken: set[int], flag: str) -> int:
    """An explicit port must be free; any other is a random free one (as `dapr run` picks)."""
    if requested is not None:
        if requested in taken or not is_free(requested):
            holder = holder_of(requested)
            held = f" by {holder}" if holder else ""
            raise PortInUseError(f"{flag} {requested}: the port is already in use{held}")
        taken.add(requested)
        return requested
    port = free_listen_port(taken)
    taken.add(port)
    return port


class PortBook:
    """Ports promised to the live sidecars of one `$TANDEM_HOME`.

    A port is only bound by Envoy a moment after it is chosen, so two `tandem run`s started
    together could both be handed the same free port. Choosing under a file lock, and skipping
    ports another live sidecar has booked, closes that gap.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    @contextmanager
    def locked(self) -> Iterator[None]:
        self._folder.mkdir(parents=True, exist_ok=True)
        with open(self._folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def booked(self) -> set[int]:
        """Ports of live sidecars; bookings of dead ones are dropped."""
        ports: set[int] = set()
        for entry in self._folder.glob("*.json"):
            try:
                pid = int(entry.stem)
                alive = pid_alive(pid)
                if alive:
                    ports.update(int(p) for p in json.loads(entry.read_text()))
            except (ValueError, OSError, TypeError):
                alive = False
            if not alive:
                entry.unlink(missing_ok=True)
        return ports

    def book(self, pid: int, ports: Iterable[int]) -> None:
        tmp = self._folder / f"{pid}.tmp"
        tmp.write_text(json.dumps(sorted(ports)))
        tmp.replace(self._folder / f"{pid}.json")

    def booking(self, pid: int) -> Path:
        """The file holding ``pid``'s ports (removed to release them)."""
        return self._folder / f"{pid}.json"

    def release(self, pid: int) -> None:
        self.booking(pid).unlink(missing_ok=True)
