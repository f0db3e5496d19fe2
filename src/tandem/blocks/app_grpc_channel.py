"""The runtime's gRPC channel to an app started with ``--app-protocol grpc``.

One ``grpc.aio`` channel to ``127.0.0.1:<app port>`` for the runtime's lifetime, speaking
Dapr's ``AppCallback`` service (pub/sub, and ``OnInvoke`` for HTTP invocations of the app). Every
call carries ``dapr-api-token`` when ``APP_API_TOKEN`` is set and ``dapr-app-id``; callers
add W3C trace context and per-call metadata. Readiness (the app port accepting
connections) is :meth:`tandem.blocks.app_channel.AppChannel.wait_ready`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from google.protobuf import empty_pb2

# gRPC metadata keys are lower-case ASCII; values printable ASCII ("-bin" keys carry bytes).
_KEY = re.compile(r"^[0-9a-z_.-]+$")
_RESERVED = frozenset({"content-type", "te", "user-agent", "host", "dapr-api-token"})
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


def grpc_metadata(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """``values`` as gRPC call metadata: keys lower-cased; what gRPC cannot carry is left out."""
    out = []
    for key, value in values.items():
        k = key.lower()
        if (
            not _KEY.match(k)
            or k.endswith("-bin")
            or k.startswith(("grpc-", ":"))
            or k in _RESERVED
            or not _PRINTABLE.match(value)
        ):
            continue
        out.append((k, value))
    return out


class AppGrpcChannel:
    def __init__(
        self,
        port: int,
        *,
        app_id: str,
        host: str = "127.0.0.1",
        token: str | None = None,
        max_message_bytes: int = 4 << 20,
        socket_path: str | None = None,
    ) -> None:
        self.port = port
        # Through Envoy's app channel listener (see app_channel.py), or straight to the port.
        self._target = f"unix:{socket_path}" if socket_path else f"{host}:{port}"
        self.host = host
        self._app_id = app_id
        self._token = token or None
        self._max = max_message_bytes
        self._channel: grpc.aio.Channel | None = None
        self._stub: appcallback_pb2_grpc.AppCallbackStub | None = None
        self._health: appcallback_pb2_grpc.AppCallbackHealthCheckStub | None = None
        self._alpha_stub: appcallback_pb2_grpc.AppCallbackAlphaStub | None = None

    def _callback(self) -> appcallback_pb2_grpc.AppCallbackStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(
                self._target,
                options=[
                    ("grpc.max_receive_message_length", self._max),
                    ("grpc.max_send_message_length", self._max),
                ],
            )
            self._stub = appcallback_pb2_grpc.AppCallbackStub(self._channel)
        return self._stub

    def metadata(self, extra: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        md = grpc_metadata(extra or {})
        md.append(("dapr-app-id", self._app_id))
        if self._token:
            md.append(("dapr-api-token", self._token))
        return md

    async def list_topic_subscriptions(
        self, timeout: float = 10.0
    ) -> appcallback_pb2.ListTopicSubscriptionsResponse:
        return await self._callback().ListTopicSubscriptions(
            empty_pb2.Empty(), metadata=self.metadata(), timeout=timeout
        )

    async def on_topic_event(
        self,
        request: appcallback_pb2.TopicEventRequest,
        metadata: Mapping[str, str],
        timeout: float | None = None,
    ) -> appcallback_pb2.TopicEventResponse:
        return await self._callback().OnTopicEvent(
            request, metadata=self.metadata(metadata), timeout=timeout
        )

    async def on_invoke(
        self,
        request: common_pb2.InvokeRequest,
        metadata: Mapping[str, str],
        timeout: float | None = None,
    ) -> tuple[common_pb2.InvokeResponse, list[tuple[str, str | bytes]]]:
        """The app's answer and the headers (initial metadata) it sent with it."""
        call = self._callback().OnInvoke(request, metadata=self.metadata(metadata), timeout=timeout)
        response = await call
        return response, list(await call.initial_metadata() or ())

    def reachable(self) -> bool:
        """Whether the channel holds a live connection (after a failed call: was the app
        there at all?)."""
        if self._channel is None:
            return False
        return self._channel.get_state() is grpc.ChannelConnectivity.READY

    async def health_check(self, timeout: float) -> None:
        """``AppCallbackHealthCheck.HealthCheck``; raises when the app is not healthy."""
        if self._health is None:
            self._callback()  # opens the channel
            assert self._channel is not None
            self._health = appcallback_pb2_grpc.AppCallbackHealthCheckStub(self._channel)
        await self._health.HealthCheck(empty_pb2.Empty(), metadata=self.metadata(), timeout=timeout)

    async def on_bulk_topic_event(
        self,
        request: appcallback_pb2.TopicEventBulkRequest,
        metadata: Mapping[str, str],
        timeout: float | None = None,
        *,
        alpha: bool = False,
    ) -> appcallback_pb2.TopicEventBulkResponse:
        """``AppCallback.OnBulkTopicEvent``, or with ``alpha`` the older
        ``AppCallbackAlpha.OnBulkTopicEventAlpha1``."""
        md = self.metadata(metadata)
        if not alpha:
            return await self._callback().OnBulkTopicEvent(request, metadata=md, timeout=timeout)
        if self._alpha_stub is None:
            self._callback()  # opens the channel
            self._alpha_stub = appcallback_pb2_grpc.AppCallbackAlphaStub(self._channel)
        return await self._alpha_stub.OnBulkTopicEventAlpha1(request, metadata=md, timeout=timeout)

    async def list_input_bindings(self, timeout: float = 10.0) -> list[str]:
        resp = await self._callback().ListInputBindings(
            empty_pb2.Empty(), metadata=self.metadata(), timeout=timeout
        )
        return list(resp.bindings)

    async def on_binding_event(
        self,
        name: str,
        data: bytes,
        metadata: Mapping[str, str],
        timeout: float | None = None,
    ) -> None:
        """``AppCallback.OnBindingEvent``; raises when the app fails the event."""
        request = appcallback_pb2.BindingEventRequest(name=name, data=data, metadata=metadata)
        await self._callback().OnBindingEvent(request, metadata=self.metadata(), timeout=timeout)

    async def on_job_event(
        self, request: appcallback_pb2.JobEventRequest, timeout: float | None = None
    ) -> None:
        """``AppCallback.OnJobEvent``, or ``AppCallbackAlpha.OnJobEventAlpha1`` for an app
        that only has the older one."""
        md = self.metadata()
        try:
            await self._callback().OnJobEvent(request, metadata=md, timeout=timeout)
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
        if self._alpha_stub is None:
            self._alpha_stub = appcallback_pb2_grpc.AppCallbackAlphaStub(self._channel)
        await self._alpha_stub.OnJobEventAlpha1(request, metadata=md, timeout=timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
            self._health = None
            self._alpha_stub = None
