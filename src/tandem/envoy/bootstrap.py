"""Render the sidecar's Envoy bootstrap from the packaged template. Pure: no I/O but reading
the template that ships with the package."""

from __future__ import annotations

import copy
import os
import secrets
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import yaml

TEMPLATE = "bootstrap.yaml"
# sun_path is 108 bytes on Linux and 104 on macOS; the contract keeps a margin.
MAX_SOCKET_PATH_BYTES = 100
RUNTIME_HTTP_CLUSTER = "tandem_runtime_http"


@cache
def _template() -> dict[str, Any]:
    # Read once; callers get deep copies, so the cached dict is never mutated.
    text = resources.files("tandem.envoy").joinpath(TEMPLATE).read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def new_node_id(app_id: str) -> str:
    """``{app_id}~{random hex}``: unique per sidecar start, readable in logs."""
    return f"{app_id}~{secrets.token_hex(6)}"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def check_socket_path(path: str, what: str) -> str:
    if not path:
        raise ValueError(f"{what} socket path is empty")
    if len(path.encode()) >= MAX_SOCKET_PATH_BYTES:
        raise ValueError(
            f"{what} socket path is {len(path.encode())} bytes, must stay under "
            f"{MAX_SOCKET_PATH_BYTES}: {path}"
        )
    return path


def _ads_endpoint(address: str) -> dict[str, Any]:
    """``unix:/path`` (the self-hosted control plane's stable socket) or ``host:port``."""
    if address.startswith("unix:"):
        return {"pipe": {"path": check_socket_path(address.removeprefix("unix:"), "ADS")}}
    host, port = parse_address(address)
    return {"socket_address": {"address": host, "port_value": port}}


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == name:
            assert isinstance(cluster, dict)
            return cluster
    raise KeyError(name)


def _endpoint_address(cluster: Mapping[str, Any]) -> dict[str, Any]:
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert isinstance(address, dict)
    return address


def render_bootstrap(
    node_id: str,
    app_id: str,
    metadata: Mapping[str, Any],
    ads_address: str,
    runtime_socket: str | os.PathLike[str],
    admin_socket: str | os.PathLike[str],
    runtime_http_socket: str | os.PathLike[str] | None = None,
    worker_sockets: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]] = (),
) -> dict[str, Any]:
    """The bootstrap dict for one sidecar; dump it as YAML/JSON for ``--config-yaml``.

    ``metadata`` is the node metadata of the contract (``app_id``, ports, …); ``app_id`` is
    copied into it if missing, and ``admin_socket`` is set to ``admin_socket`` (the control
    plane routes ``/metrics`` to it). ``runtime_http_socket`` is the runtime's HTTP/1.1 front
    door: with it the static cluster ``tandem_runtime_http`` is kept, and it is required when
    the metadata says ``api_transport: http``. Raises ValueError on a malformed address, a
    socket path too long for a Unix socket, or ``api_transport: http`` without the socket.

    ``worker_sockets`` (``--runtime-workers N`` > 1): the (gRPC, HTTP) sockets of workers
    1..N-1; the clusters of every runtime process are added (tandem.envoy.workers).
    """
    if not node_id:
        raise ValueError("node_id is empty")
    if not app_id:
        raise ValueError("app_id is empty")
    ads_endpoint = _ads_endpoint(ads_address)
    runtime_path = check_socket_path(os.fspath(runtime_socket), "runtime")
    admin_path = check_socket_path(os.fspath(admin_socket), "admin")
    if metadata.get("app_id", app_id) != app_id:
        raise ValueError(f"metadata app_id {metadata['app_id']!r} differs from {app_id!r}")
    http_path = (
        check_socket_path(os.fspath(runtime_http_socket), "runtime HTTP")
        if runtime_http_socket is not None
        else None
    )
    if metadata.get("api_transport") == "http" and http_path is None:
        raise ValueError("api_transport http needs the runtime's HTTP socket")

    config = copy.deepcopy(_template())
    # Absent values (no app port, no metrics port) are left out rather than sent as null.
    node_metadata = {k: v for k, v in metadata.items() if v is not None}
    config["node"] = {
        "id": node_id,
        "cluster": app_id,
        "metadata": {**node_metadata, "app_id": app_id, "admin_socket": admin_path},
    }
    config["admin"]["address"]["pipe"]["path"] = admin_path
    xds_address = _endpoint_address(_cluster(config, "xds_cluster"))
    xds_address.clear()
    xds_address.update(ads_endpoint)
    _endpoint_address(_cluster(config, "tandem_runtime"))["pipe"]["path"] = runtime_path
    if http_path is not None:
        _endpoint_address(_cluster(config, RUNTIME_HTTP_CLUSTER))["pipe"]["path"] = http_path
    else:
        clusters = config["static_resources"]["clusters"]
        clusters[:] = [c for c in clusters if c["name"] != RUNTIME_HTTP_CLUSTER]
    if worker_sockets:
        from tandem.envoy.workers import add_worker_clusters

        add_worker_clusters(config, worker_sockets)
    return config


def bootstrap_yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False)
