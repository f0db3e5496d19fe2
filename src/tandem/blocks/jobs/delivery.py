"""Job triggers delivered to the app: ``POST /job/<name>`` (HTTP) or ``OnJobEvent`` (gRPC).

The answer becomes the scheduler's outcome: 2xx (or an OK RPC) is delivered; 404 too, as
in Dapr (not retryable: the app has no handler); anything else fails the trigger and the
job's failure policy decides. Each trigger's lateness (due time to delivery) is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import any_pb2

from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.app_grpc_channel import AppGrpcChannel
from tandem.blocks.jobs.data import body_from_any
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics

log = logging.getLogger("tandem.jobs")

DELIVERED, FAILED, UNROUTABLE = "delivered", "failed", "unroutable"


class JobDelivery:
    """``http`` and ``grpc`` give the app's channels once they are open (None before)."""

    def __init__(
        self,
        http: Callable[[], AppChannel | None],
        grpc_app: Callable[[], AppGrpcChannel | None],
        metrics: RuntimeMetrics = NO_METRICS,
    ) -> None:
        self._http = http
        self._grpc = grpc_app
        self._metrics = metrics

    async def __call__(self, name: str, data: bytes, due: str = "") -> str:
        if due:
            late = datetime.now(UTC) - datetime.fromisoformat(due)
            self._metrics.job_trigger_lateness(late.total_seconds() * 1000)
        grpc_channel = self._grpc()
        if grpc_channel is not None:
            return await self._grpc_deliver(grpc_channel, name, data)
        channel = self._http()
        if channel is None:
            return UNROUTABLE
        try:
            resp = await channel.request(
                "POST",
                f"/job/{quote(name, safe='')}",
                body=body_from_any(data),
                headers={"content-type": "application/json"},
            )
        except AppChannelError as exc:
            log.warning("job %s: the app is unreachable: %s", name, exc)
            return FAILED
        if 200 <= resp.status < 300 or resp.status == 404:
            return DELIVERED
        log.warning("job %s: the app answered HTTP %d", name, resp.status)
        return FAILED

    @staticmethod
    async def _grpc_deliver(channel: AppGrpcChannel, name: str, data: bytes) -> str:
        request = appcallback_pb2.JobEventRequest(
            name=name,
            data=any_pb2.Any.FromString(data),
            method=f"job/{name}",
            content_type="application/json",
            http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
        )
        try:
            await channel.on_job_event(request)
        except grpc.aio.AioRpcError as exc:
            log.warning("job %s: OnJobEvent failed: %s %s", name, exc.code().name, exc.details())
            return FAILED
        return DELIVERED
