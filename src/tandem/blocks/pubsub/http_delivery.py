"""Delivery to an HTTP app: ``POST /<route>`` and Dapr's reading of the answer."""

from __future__ import annotations

import re

import orjson

from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.pubsub.delivery import Delivery, DeliveryResult, DeliveryStatus

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED = frozenset({"content-type", "content-length", "host", "traceparent", "tracestate"})


def classify(status: int, body: bytes) -> DeliveryResult:
    """The app's answer as Dapr reads it (see the table in dapr-api §3.5)."""
    if 200 <= status < 300:
        try:
            parsed = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            parsed = None
        word = parsed.get("status") if isinstance(parsed, dict) else None
        if word is None or not isinstance(word, str):
            return DeliveryResult(DeliveryStatus.SUCCESS, status)
        word = word.upper()
        if word in ("", "SUCCESS"):
            return DeliveryResult(DeliveryStatus.SUCCESS, status)
        if word == "DROP":
            return DeliveryResult(DeliveryStatus.DROP, status, "the app answered DROP")
        detail = "the app answered RETRY" if word == "RETRY" else f"unknown status {word!r}"
        return DeliveryResult(DeliveryStatus.RETRY, status, detail)
    if status == 404:
        return DeliveryResult(DeliveryStatus.NOT_FOUND, status, "the app has no such route")
    return DeliveryResult(DeliveryStatus.RETRY, status, f"the app answered HTTP {status}")


def headers_for(d: Delivery) -> dict[str, str]:
    headers = {
        k: v for k, v in d.metadata.items() if _TOKEN.match(k) and k.lower() not in _RESERVED
    }
    headers["content-type"] = d.content_type
    headers["pubsubname"] = d.pubsub_name
    headers["traceparent"] = d.app_traceparent()
    if d.tracestate:
        headers["tracestate"] = d.tracestate
    return {k: v.replace("\r", " ").replace("\n", " ") for k, v in headers.items()}


class HttpDelivery:
    def __init__(self, channel: AppChannel) -> None:
        self._channel = channel

    @property
    def channel(self) -> AppChannel:
        return self._channel

    async def deliver(self, delivery: Delivery, timeout: float | None) -> DeliveryResult:
        try:
            resp = await self._channel.request(
                "POST",
                delivery.path,
                body=delivery.body,
                headers=headers_for(delivery),
                timeout=timeout,
            )
        except AppChannelError as exc:
            return DeliveryResult(DeliveryStatus.RETRY, None, str(exc))
        return classify(resp.status, resp.body)
