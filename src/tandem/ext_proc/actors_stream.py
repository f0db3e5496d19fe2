"""``Dapr/SubscribeActorEventsAlpha1``: actors hosted over an app-initiated gRPC stream
(the SDK's ``dapr.actor.runtime.grpc_host.ActorGrpcHost``), no app HTTP server at all.

The app's first message registers its actor types and settings (the stream's form of
``GET /dapr/config``); the runtime answers ``initial_response`` once it hosts them. Then
every actor callback (invoke, reminder, timer, deactivate) goes down the stream with an
id, and the app's answer with that id completes it. One stream hosts at a time; when it
ends, its actors are deactivated and the types are no longer hosted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import grpc
from dapr.proto.runtime.v1 import actors_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from tandem.blocks.actors.config import ActorConfig, TypeSettings
from tandem.blocks.actors.engine import ActorApp
from tandem.blocks.app_channel import AppChannelError, AppResponse
from tandem.blocks.errors import DaprError

log = logging.getLogger("tandem.actors")

# What the runtime does with a registration: host the types (``ActorApp`` reaches the app
# over this stream) and, when the stream ends, stop hosting them.
Host = Callable[[ActorConfig, ActorApp], Awaitable[None]]
Unhost = Callable[[], Awaitable[None]]


def config_from(initial: actors_pb2.SubscribeActorEventsRequestInitialAlpha1) -> ActorConfig:
    base = _apply(TypeSettings(), initial)
    types = dict.fromkeys(initial.entities, base)
    for group in initial.entities_config:
        for name in group.entities:
            types[name] = _apply(base, group)
    return ActorConfig(types)


def _apply(settings: TypeSettings, msg: Any) -> TypeSettings:
    out = settings
    if msg.HasField("actor_idle_timeout") and _positive(msg.actor_idle_timeout):
        out = _replace(out, idle_timeout=msg.actor_idle_timeout.ToTimedelta())
    if msg.HasField("drain_ongoing_call_timeout") and _positive(msg.drain_ongoing_call_timeout):
        out = _replace(out, drain_timeout=msg.drain_ongoing_call_timeout.ToTimedelta())
    if msg.HasField("drain_rebalanced_actors"):
        out = _replace(out, drain_rebalanced=msg.drain_rebalanced_actors)
    if msg.HasField("reentrancy"):
        out = _replace(
            out,
            reentrancy=msg.reentrancy.enabled,
            max_stack_depth=msg.reentrancy.max_stack_depth or out.max_stack_depth,
        )
    return out


def _positive(d: duration_pb2.Duration) -> bool:
    return d.ToTimedelta() > timedelta(0)


def _replace(settings: TypeSettings, **changes: Any) -> TypeSettings:
    from dataclasses import replace

    return replace(settings, **changes)


class StreamActorApp:
    """An ``ActorApp`` whose callbacks travel down the subscribe stream."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[actors_pb2.SubscribeActorEventsResponseAlpha1 | None] = (
            asyncio.Queue()
        )
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self.closed = False

    async def _call(self, build: Callable[[str], Any]) -> Any:
        if self.closed:
            raise AppChannelError("the app's actor stream is closed")
        call_id = str(next(self._ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self.outbox.put_nowait(build(call_id))
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    def answer(self, message: actors_pb2.SubscribeActorEventsRequestAlpha1) -> None:
        kind = message.WhichOneof("request_type")
        if kind is None or kind == "initial_request":
            return
        answer = getattr(message, kind)
        future = self._pending.get(answer.id)
        if future is not None and not future.done():
            future.set_result((kind, answer))

    def close(self) -> None:
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AppChannelError("the app's actor stream closed"))
        self.outbox.put_nowait(None)

    async def invoke(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: Mapping[str, str]
    ) -> AppResponse:
        metadata = {k: v for k, v in headers.items() if k.lower() == "dapr-reentrancy-id"}
        kind, answer = await self._call(
            lambda i: actors_pb2.SubscribeActorEventsResponseAlpha1(
                invoke_request=actors_pb2.SubscribeActorEventsResponseInvokeRequestAlpha1(
                    id=i,
                    actor_type=actor_type,
                    actor_id=actor_id,
                    method=method,
                    data=body,
                    metadata=metadata,
                )
            )
        )
        if kind == "request_failed":
            status = 404 if answer.code == grpc.StatusCode.NOT_FOUND.value[0] else 500
            return AppResponse(status, answer.message.encode())
        status = 500 if answer.error else 200
        return AppResponse(status, answer.data, dict(answer.metadata))

    async def deactivate(self, actor_type: str, actor_id: str) -> None:
        await self._call(
            lambda i: actors_pb2.SubscribeActorEventsResponseAlpha1(
                deactivate_request=actors_pb2.SubscribeActorEventsResponseDeactivateRequestAlpha1(
                    id=i, actor_type=actor_type, actor_id=actor_id
                )
            )
        )

    async def callback(
        self, actor_type: str, actor_id: str, kind: str, name: str, payload: bytes
    ) -> AppResponse:
        body = json.loads(payload or b"{}")
        data = any_pb2.Any()
        if body.get("data") is not None:
            # As daprd sends it: the registered JSON value, wrapped in a BytesValue.
            data.Pack(wrappers_pb2.BytesValue(value=json.dumps(body["data"]).encode()))
        fields: dict[str, Any] = {
            "actor_type": actor_type,
            "actor_id": actor_id,
            "name": name,
            "due_time": body.get("dueTime") or "",
            "period": body.get("period") or "",
            "data": data,
        }
        if kind == "timer":
            fields["callback"] = body.get("callback") or ""

            def build(i: str) -> Any:
                return actors_pb2.SubscribeActorEventsResponseAlpha1(
                    timer_request=actors_pb2.SubscribeActorEventsResponseTimerRequestAlpha1(
                        id=i, **fields
                    )
                )
        else:

            def build(i: str) -> Any:
                return actors_pb2.SubscribeActorEventsResponseAlpha1(
                    reminder_request=actors_pb2.SubscribeActorEventsResponseReminderRequestAlpha1(
                        id=i, **fields
                    )
                )

        answer_kind, answer = await self._call(build)
        if answer_kind == "request_failed":
            return AppResponse(500, answer.message.encode())
        headers = {"x-daprremindercancel": "true"} if getattr(answer, "cancel", False) else {}
        return AppResponse(200, b"", headers)


def rpc(host: Host, unhost: Unhost) -> Callable[[AsyncIterator[Any]], AsyncGenerator[Any, None]]:
    hosting = asyncio.Lock()

    async def handler(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("request_type") != "initial_request":
            raise DaprError("ERR_BAD_REQUEST", "the first message must be initial_request")
        if hosting.locked():
            raise DaprError(
                "ERR_BAD_REQUEST",
                "another actor stream already hosts this app's actors",
                grpc_status=grpc.StatusCode.ALREADY_EXISTS,
            )
        async with hosting:
            app = StreamActorApp()
            config = config_from(first.initial_request)
            await host(config, app)
            log.info("app hosts actors over the gRPC stream", extra={"types": sorted(config.types)})

            async def read() -> None:
                async for message in requests:
                    app.answer(message)

            reader = asyncio.create_task(read())
            reader.add_done_callback(lambda _: app.close())
            try:
                yield actors_pb2.SubscribeActorEventsResponseAlpha1(
                    initial_response=actors_pb2.SubscribeActorEventsResponseInitialAlpha1()
                )
                while True:
                    message = await app.outbox.get()
                    if message is None:
                        break
                    yield message
            finally:
                reader.cancel()
                app.close()
                await unhost()

    return handler
