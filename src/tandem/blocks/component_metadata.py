"""Reading component metadata the way Dapr does: names are case-insensitive, values strings."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tandem.resources.durations import parse_duration


class ComponentConfigError(ValueError):
    """A component's metadata is unusable; raised when the component is created."""


def lookup(metadata: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` present in ``metadata``, compared case-insensitively."""
    lowered = {k.lower(): v for k, v in metadata.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None:
            return value
    return None


def as_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "y", "on")


def as_int(name: str, value: str | None, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise ComponentConfigError(f"metadata {name}: {value!r} is not an integer") from None


def as_seconds(name: str, value: str | None, default: float) -> float:
    """A Go duration (``"30s"``, ``"1h"``) or a bare number of seconds."""
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ComponentConfigError(f"metadata {name}: {exc}") from None


def redis_address(metadata: Mapping[str, str], what: str) -> tuple[str, int]:
    """``redisHost`` (``host:port``, port 6379 when left out), shared by every Redis component."""
    host_port = lookup(metadata, "redisHost")
    if not host_port:
        raise ComponentConfigError(f"{what}: metadata redisHost is required")
    host, _, port = host_port.rpartition(":")
    if not host:
        host, port = host_port, "6379"
    return host, as_int("redisHost port", port, 6379)


def redis_read_timeout(metadata: Mapping[str, str]) -> float:
    """``readTimeout``: how long one call may wait for Redis's answer (default 5 s)."""
    return as_seconds("readTimeout", lookup(metadata, "readTimeout"), 5.0)


_QUANTITY = re.compile(r"(\d+)(Ki|Mi|Gi|k|M|G)?")
_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}


def as_bytes(name: str, value: str | None, default: int) -> int:
    """A size as Dapr writes it (``100Mi``, ``4k``; a bare number is bytes)."""
    if value is None or value.strip() == "":
        return default
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise ComponentConfigError(f"metadata {name}: {value!r} is not a size such as 4Mi")
    return int(match.group(1)) * _UNITS[match.group(2)]
