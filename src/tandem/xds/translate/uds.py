"""``--unix-domain-socket DIR``: the app-facing API listeners again, on Unix sockets.

Dapr names them ``DIR/dapr-<appId>-http.socket`` and ``DIR/dapr-<appId>-grpc.socket``. Each
is a copy of its TCP listener (same filters, routes over RDS, access log) on a pipe
address; the TCP ports stay open as well (`tandem run` and the SDKs' health waits use them).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate.names import DAPR_GRPC_UDS, DAPR_HTTP_UDS


def socket_paths(directory: str, app_id: str) -> tuple[str, str]:
    """(HTTP, gRPC) socket paths, named as Dapr names them."""
    base = PurePosixPath(directory)
    return str(base / f"dapr-{app_id}-http.socket"), str(base / f"dapr-{app_id}-grpc.socket")


def _on_pipe(listener: listener_pb2.Listener, name: str, path: str) -> listener_pb2.Listener:
    copy = listener_pb2.Listener()
    copy.CopyFrom(listener)
    copy.name = name
    copy.address.CopyFrom(address_pb2.Address(pipe=address_pb2.Pipe(path=path, mode=0o600)))
    copy.ClearField("enable_reuse_port")  # a TCP-only setting
    return copy


def uds_listeners(
    sidecar: Sidecar, http: listener_pb2.Listener, grpc: listener_pb2.Listener
) -> list[listener_pb2.Listener]:
    if sidecar.unix_domain_socket is None:
        return []
    http_path, grpc_path = socket_paths(sidecar.unix_domain_socket, sidecar.app_id)
    return [_on_pipe(http, DAPR_HTTP_UDS, http_path), _on_pipe(grpc, DAPR_GRPC_UDS, grpc_path)]
