"""The actor callbacks of an HTTP app, as ``dapr.ext.fastapi.DaprActor`` serves them."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from tandem.blocks.app_channel import AppChannel, AppResponse

# Request headers an actor call carries on, to the owner and to the app (the rest are the
# caller's API plumbing: tokens, hop-by-hop headers, Envoy's own).
ACTOR_CALL_HEADERS = frozenset({"content-type", "dapr-reentrancy-id", "traceparent", "tracestate"})


def _path(*parts: str) -> str:
    return "/actors/" + "/".join(quote(p, safe="") for p in parts)


class HttpActorApp:
    def __init__(self, channel: AppChannel) -> None:
        self._channel = channel

    async def invoke(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: Mapping[str, str]
    ) -> AppResponse:
        sent = {k: v for k, v in headers.items() if k.lower() in ACTOR_CALL_HEADERS}
        # Dapr always calls the app with PUT, whatever verb the caller used.
        return await self._channel.request(
            "PUT", _path(actor_type, actor_id, "method", method), body=body, headers=sent
        )

    async def deactivate(self, actor_type: str, actor_id: str) -> None:
        await self._channel.request("DELETE", _path(actor_type, actor_id))

    async def callback(
        self, actor_type: str, actor_id: str, kind: str, name: str, payload: bytes
    ) -> AppResponse:
        return await self._channel.request(
            "PUT",
            _path(actor_type, actor_id, "method", kind, name),
            body=payload,
            headers={"content-type": "application/json"},
        )
