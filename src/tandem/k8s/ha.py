"""Two (or more) control-plane replicas: what only the leader does, and how callers find it.

- xDS and enrolment are served by every replica: Envoys and enrolment containers reach them
  through the control plane's Service, and an Envoy whose replica dies reconnects through
  the same Service to another one (the mesh view comes from the cluster's Pods, so each
  replica routes to every sidecar).
- Placement, reminders and jobs have one writer: the replica holding the Lease
  (:mod:`tandem.k8s.leader`). It labels its own pod ``tandem.io/controlplane-leader=true``;
  the ``<release>-placement`` Service selects that label, and runtimes dial it. A follower
  refuses those calls with UNAVAILABLE (:class:`LeaderOnly`), for the moment a transition
  leaves a stale connection. The leader's placement epoch is the Lease's
  ``leaseTransitions`` + 1, which only grows, so tables of a new leader always supersede the
  old one's. A leader that loses the Lease exits (the kubelet restarts it as a follower):
  that ends its placement streams at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from tandem.placement import wire
from tandem.placement.service import EPOCH_FILE
from tandem.xds.ca import write_private_file

log = logging.getLogger("tandem.k8s.ha")

LEADER_LABEL = "tandem.io/controlplane-leader"
LEADER_ONLY_SERVICES = frozenset({wire.SERVICE, wire.REMINDERS, wire.JOBS})


def write_epoch(home: Path, transitions: int) -> None:
    """Make the placement service's next epoch ``transitions + 1`` (see next_epoch)."""
    write_private_file(home / EPOCH_FILE, json.dumps({"epoch": transitions}).encode())


class LeaderOnly(grpc.aio.ServerInterceptor):
    """Refuses the leader-only services while this replica is not the leader."""

    def __init__(self, leading: Callable[[], bool]) -> None:
        self._leading = leading

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.strip("/").split("/")[0]
        if handler is None or service not in LEADER_ONLY_SERVICES or self._leading():
            return handler

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "this control-plane replica is not the leader"
            )

        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse, **serializers)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(refuse, **serializers)
        return grpc.unary_unary_rpc_method_handler(refuse, **serializers)


async def label_self(client: Any, namespace: str, pod: str, leading: bool) -> None:
    """Add or remove the leader label on this replica's pod."""
    from lightkube.resources.core_v1 import Pod
    from lightkube.types import PatchType

    value = "true" if leading else None
    await client.patch(
        Pod,
        pod,
        {"metadata": {"labels": {LEADER_LABEL: value}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
