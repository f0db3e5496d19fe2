"""The control plane's model of the mesh: plain data, independent of Envoy protos.

A :class:`Sidecar` is what one Envoy told us about itself in its node metadata (the table in
``docs/design/sidecar-contract.md``); a :class:`Mesh` is every sidecar whose ADS stream is
live. Translation (``tandem.xds.translate``) is a pure function of the two.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_NAMESPACE = "default"
# Dapr's DefaultMaxRequestBodySize (4 << 20).
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_INTERNAL_ADDRESS = "127.0.0.1"

AppProtocol = Literal["http", "grpc"]
APP_PROTOCOLS: tuple[AppProtocol, ...] = ("http", "grpc")

# App ids end up in cluster names, RE2 patterns and header values. Dapr forbids dots in app
# ids (a dot separates the namespace in `id.namespace`), and we refuse anything that would
# need escaping in a URL path segment.
_APP_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class SidecarMetadataError(ValueError):
    """The node metadata on an ADS stream does not follow the sidecar contract."""


@dataclass(frozen=True, slots=True)
class Sidecar:
    """One live sidecar (one Envoy), as announced in its node metadata."""

    node_id: str
    app_id: str
    http_port: int
    grpc_port: int
    internal_port: int
    namespace: str = DEFAULT_NAMESPACE
    app_port: int | None = None
    app_protocol: AppProtocol = "http"
    internal_address: str = DEFAULT_INTERNAL_ADDRESS
    metrics_port: int | None = None
    admin_socket: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    pid: int | None = None

    @classmethod
    def from_node_metadata(cls, node_id: str, metadata: Mapping[str, Any]) -> Sidecar:
        """Validate the node metadata Struct (as a plain dict) and build a Sidecar.

        Numbers arrive as floats (a protobuf Struct has only doubles), so integral floats are
        accepted wherever the contract says "number". Every problem is reported at once.
        """
        problems: list[str] = []
        reader = _Reader(metadata, problems)
        if not node_id:
            problems.append("node.id is empty")
        app_id = reader.string("app_id", required=True)
        if app_id and not _APP_ID.match(app_id):
            problems.append(
                f"app_id {app_id!r} must be 1-64 letters, digits, '-' or '_' "
                "and start and end with a letter or digit"
            )
        namespace = reader.string("namespace") or DEFAULT_NAMESPACE
        if not _NAMESPACE.match(namespace):
            problems.append(f"namespace {namespace!r} is not a DNS label")
        protocol = reader.string("app_protocol") or "http"
        if protocol not in APP_PROTOCOLS:
            problems.append(f"app_protocol {protocol!r} must be one of {', '.join(APP_PROTOCOLS)}")
        internal_address = reader.string("internal_address") or DEFAULT_INTERNAL_ADDRESS
        # EDS endpoints must be IP literals: Envoy does not resolve names in EDS.
        try:
            ipaddress.ip_address(internal_address)
        except ValueError:
            problems.append(f"internal_address {internal_address!r} is not an IP address")
        http_port = reader.port("http_port", required=True)
        grpc_port = reader.port("grpc_port", required=True)
        internal_port = reader.port("internal_port", required=True)
        app_port = reader.port("app_port")
        metrics_port = reader.port("metrics_port")
        admin_socket = reader.string("admin_socket") or None
        max_body = reader.integer("max_body_bytes", minimum=1)
        pid = reader.integer("pid", minimum=1)
        if problems:
            raise SidecarMetadataError(f"node {node_id!r}: " + "; ".join(problems))
        assert http_port is not None and grpc_port is not None and internal_port is not None
        return cls(
            node_id=node_id,
            app_id=app_id,
            namespace=namespace,
            app_port=app_port,
            app_protocol="grpc" if protocol == "grpc" else "http",
            http_port=http_port,
            grpc_port=grpc_port,
            internal_port=internal_port,
            internal_address=internal_address,
            metrics_port=metrics_port,
            admin_socket=admin_socket,
            max_body_bytes=max_body if max_body is not None else DEFAULT_MAX_BODY_BYTES,
            pid=pid,
        )

    def to_node_metadata(self) -> dict[str, Any]:
        """The node metadata that parses back into this sidecar (absent values left out)."""
        out: dict[str, Any] = {
            "app_id": self.app_id,
            "namespace": self.namespace,
            "app_protocol": self.app_protocol,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "internal_port": self.internal_port,
            "internal_address": self.internal_address,
            "max_body_bytes": self.max_body_bytes,
        }
        for key, value in (
            ("app_port", self.app_port),
            ("metrics_port", self.metrics_port),
            ("admin_socket", self.admin_socket),
            ("pid", self.pid),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(slots=True)
class _Reader:
    """Typed reads from the metadata dict, collecting problems instead of stopping at one."""

    data: Mapping[str, Any]
    problems: list[str]

    def string(self, key: str, *, required: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problems.append(f"{key} is required")
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{key} must be a string, got {type(value).__name__}")
            return ""
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int = 0) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problems.append(f"{key} is required")
            return None
        # bool is an int in Python; a Struct bool is never a valid number here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{key} must be a number, got {type(value).__name__}")
            return None
        if isinstance(value, float) and not value.is_integer():
            self.problems.append(f"{key} must be a whole number, got {value}")
            return None
        number = int(value)
        if number < minimum:
            self.problems.append(f"{key} must be at least {minimum}, got {number}")
            return None
        return number

    def port(self, key: str, *, required: bool = False) -> int | None:
        number = self.integer(key, required=required, minimum=1)
        if number is not None and number > 65535:
            self.problems.append(f"{key} must be a TCP port (1-65535), got {number}")
            return None
        return number


@dataclass(frozen=True, slots=True)
class Mesh:
    """Every live sidecar. Sidecars are kept sorted by node id so translation is stable."""

    sidecars: tuple[Sidecar, ...] = ()
    _by_app: Mapping[str, tuple[Sidecar, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.sidecars, key=lambda s: s.node_id))
        ids = [s.node_id for s in ordered]
        if len(set(ids)) != len(ids):
            raise ValueError("a mesh holds each node id once")
        by_app: dict[str, list[Sidecar]] = {}
        for sidecar in ordered:
            by_app.setdefault(sidecar.app_id, []).append(sidecar)
        object.__setattr__(self, "sidecars", ordered)
        object.__setattr__(
            self, "_by_app", {app: tuple(group) for app, group in sorted(by_app.items())}
        )

    @classmethod
    def of(cls, sidecars: Iterable[Sidecar]) -> Mesh:
        return cls(tuple(sidecars))

    def app_ids(self) -> tuple[str, ...]:
        """Known app ids, sorted."""
        return tuple(self._by_app)

    def instances(self, app_id: str) -> tuple[Sidecar, ...]:
        """Live sidecars of one app id, sorted by node id; empty if the app is unknown."""
        return self._by_app.get(app_id, ())

    def get(self, node_id: str) -> Sidecar | None:
        for sidecar in self.sidecars:
            if sidecar.node_id == node_id:
                return sidecar
        return None
