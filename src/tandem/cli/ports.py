"""Choosing listener ports so sidecars on one machine never collide on a port nobody asked for."""

from __future__ import annotations

import socket


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PortInUseError(Exception):
    pass


def choose(requested: int | None, default: int | None, taken: set[int], flag: str) -> int:
    """An explicit port must be free; otherwise the default when free, else any free port."""
    if requested is not None:
        if requested in taken or not is_free(requested):
            raise PortInUseError(f"{flag} {requested}: the port is already in use")
        taken.add(requested)
        return requested
    if default is not None and default not in taken and is_free(default):
        taken.add(default)
        return default
    while True:
        port = free_port()
        if port not in taken:
            taken.add(port)
            return port
