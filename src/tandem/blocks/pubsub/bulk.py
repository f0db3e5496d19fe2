"""Bulk subscribe delivery (dapr-api §3.6), to an HTTP app or a gRPC app.

A :class:`BulkBatcher` stands where the single-event :class:`DeliveryTarget` stands in the
subscriber core: each message's handler still calls ``deliver`` and gets back its own
:class:`DeliveryResult`, so acknowledgement, retries (the retried entry joins a later
batch) and dead letters stay the core's work, per message. In between, the batcher holds
the deliveries until ``maxMessagesCount`` are waiting or ``maxAwaitDurationMs`` has passed
since the first, then sends them as one request per route — to an HTTP app ``POST
/<route>`` with Dapr's bulk body, to a gRPC app ``OnBulkTopicEvent`` (see
:class:`~tandem.blocks.pubsub.grpc_delivery.GrpcBulkSender`) — and hands each entry the
app's answer for it. An HTTP app's answer:

- 2xx with ``{"statuses": [{"entryId", "status"}]}``: SUCCESS / DROP as answered; RETRY,
  an empty or unknown status, or no status for the entry → RETRY;
- 2xx without that JSON → every entry RETRY; 404 → every entry NOT_FOUND (dead letter);
  any other answer or no answer → every entry RETRY.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.component_metadata import lookup
from tandem.blocks.pubsub.delivery import (
    BULK_EVENT_TYPE,
    BulkEntry,
    BulkSender,
    Delivery,
    DeliveryResult,
    DeliveryStatus,
)
from tandem.blocks.pubsub.grpc_delivery import GrpcBulkSender, GrpcDelivery
from tandem.blocks.pubsub.http_delivery import HttpDelivery
from tandem.blocks.pubsub.subscriptions import TopicSubscription

log = logging.getLogger("tandem.pubsub")

DEFAULT_MAX_MESSAGES = 100
DEFAULT_MAX_AWAIT_MS = 1000
__all__ = ["BULK_EVENT_TYPE", "BulkEntry", "BulkBatcher", "HttpBulkSender", "batcher_for"]


@dataclass(frozen=True, slots=True)
class BulkSettings:
    max_messages: int = DEFAULT_MAX_MESSAGES
    max_await: float = DEFAULT_MAX_AWAIT_MS / 1000  # seconds

    @classmethod
    def of(cls, sub: TopicSubscription) -> BulkSettings:
        count, wait = sub.bulk.max_messages_count, sub.bulk.max_await_duration_ms
        return cls(
            max_messages=count if count is not None and count > 0 else DEFAULT_MAX_MESSAGES,
            max_await=(wait if wait is not None and wait >= 0 else DEFAULT_MAX_AWAIT_MS) / 1000,
        )


def subscribe_metadata(sub: TopicSubscription) -> Mapping[str, str]:
    """The subscription metadata for the broker: a bulk subscription lets the broker hand
    out a whole batch at once (``concurrency`` ≥ ``maxMessagesCount``) unless it says how
    many itself."""
    if not sub.bulk.enabled or lookup(sub.metadata, "concurrency"):
        return sub.metadata
    return {**sub.metadata, "concurrency": str(BulkSettings.of(sub).max_messages)}


# -- the wire: body and answer -------------------------------------------------------------


def encode_request(
    pubsub_name: str, topic: str, entries: Sequence[BulkEntry], *, request_id: str = ""
) -> bytes:
    """Dapr's bulk body; each entry's ``event`` is the CloudEvent as the app would get it
    one by one."""
    return orjson.dumps(
        {
            "id": request_id or str(uuid.uuid4()),
            "type": BULK_EVENT_TYPE,
            "topic": topic,
            "pubsubname": pubsub_name,
            "metadata": {},
            "entries": [
                {
                    "entryId": e.entry_id,
                    "event": orjson.Fragment(e.delivery.body),
                    "contentType": e.delivery.content_type,
                    "metadata": dict(e.delivery.metadata),
                }
                for e in entries
            ],
        }
    )


def classify_bulk(status: int, body: bytes, entry_ids: Sequence[str]) -> dict[str, DeliveryResult]:
    """The app's answer to a bulk delivery, entry by entry (dapr-api §3.6)."""
    if status == 404:
        result = DeliveryResult(DeliveryStatus.NOT_FOUND, status, "the app has no such route")
        return dict.fromkeys(entry_ids, result)
    if not 200 <= status < 300:
        result = DeliveryResult(DeliveryStatus.RETRY, status, f"the app answered HTTP {status}")
        return dict.fromkeys(entry_ids, result)
    try:
        parsed = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        parsed = None
    statuses = parsed.get("statuses") if isinstance(parsed, dict) else None
    if not isinstance(statuses, list):
        result = DeliveryResult(
            DeliveryStatus.RETRY, status, "the app's bulk answer has no statuses"
        )
        return dict.fromkeys(entry_ids, result)
    answered: dict[str, str] = {}
    for item in statuses:
        if isinstance(item, dict) and isinstance(item.get("entryId"), str):
            word = item.get("status")
            answered[item["entryId"]] = word.upper() if isinstance(word, str) else ""
    out: dict[str, DeliveryResult] = {}
    for entry_id in entry_ids:
        word = answered.get(entry_id)
        if word == "SUCCESS":
            out[entry_id] = DeliveryResult(DeliveryStatus.SUCCESS, status)
        elif word == "DROP":
            out[entry_id] = DeliveryResult(DeliveryStatus.DROP, status, "the app answered DROP")
        elif word is None:
            out[entry_id] = DeliveryResult(
                DeliveryStatus.RETRY, status, "the app's bulk answer has no status for it"
            )
        else:
            detail = "the app answered RETRY" if word == "RETRY" else f"unknown status {word!r}"
            out[entry_id] = DeliveryResult(DeliveryStatus.RETRY, status, detail)
    return out


class HttpBulkSender:
    """Sends one batch (all on one route) to an HTTP app."""

    def __init__(self, channel: AppChannel) -> None:
        self._channel = channel

    async def send(
        self, path: str, entries: Sequence[BulkEntry], timeout: float | None
    ) -> dict[str, DeliveryResult]:
        first = entries[0].delivery
        headers = {
            "content-type": "application/json",
            "pubsubname": first.pubsub_name,
            "traceparent": first.app_traceparent(),
        }
        if first.tracestate:
            headers["tracestate"] = first.tracestate.replace("\r", " ").replace("\n", " ")
        body = encode_request(first.pubsub_name, first.topic, entries)
        ids = [e.entry_id for e in entries]
        try:
            resp = await self._channel.request(
                "POST", path, body=body, headers=headers, timeout=timeout
            )
        except AppChannelError as exc:
            return dict.fromkeys(ids, DeliveryResult(DeliveryStatus.RETRY, None, str(exc)))
        return classify_bulk(resp.status, resp.body, ids)


# -- batching -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Waiting:
    entry: BulkEntry
    future: asyncio.Future[DeliveryResult]
    timeout: float | None


class BulkBatcher:
    """A :class:`DeliveryTarget` for one bulk subscription: collects, sends in batches,
    answers each caller with its entry's result."""

    def __init__(self, sender: BulkSender, settings: BulkSettings) -> None:
        self._sender = sender
        self._settings = settings
        self._pending: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()

    async def deliver(self, delivery: Delivery, timeout: float | None) -> DeliveryResult:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(BulkEntry(str(uuid.uuid4()), delivery), loop.create_future(), timeout)
        self._pending.append(waiting)
        if len(self._pending) >= self._settings.max_messages:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._settings.max_await, self._flush)
        # Shielded: a handler cancelled (the subscription closing) leaves its batch alone;
        # the batch is cancelled only once every handler in it has gone.
        try:
            return await asyncio.shield(waiting.future)
        except asyncio.CancelledError:
            self._abandon(waiting)
            raise

    def _abandon(self, waiting: _Waiting) -> None:
        if waiting in self._pending:
            self._pending.remove(waiting)
            if not self._pending and self._timer is not None:
                self._timer.cancel()
                self._timer = None
        waiting.future.cancel()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            take = self._pending[: self._settings.max_messages]
            del self._pending[: self._settings.max_messages]
            task = asyncio.get_running_loop().create_task(self._send(take))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            for w in take:
                w.future.add_done_callback(functools.partial(self._maybe_cancel, task, take))

    @staticmethod
    def _maybe_cancel(
        task: asyncio.Task[None], waiting: list[_Waiting], _done: object = None
    ) -> None:
        if all(w.future.cancelled() for w in waiting):
            task.cancel()

    async def _send(self, waiting: list[_Waiting]) -> None:
        by_path: dict[str, list[_Waiting]] = {}
        for w in waiting:
            by_path.setdefault(w.entry.delivery.path, []).append(w)
        await asyncio.gather(*(self._send_route(path, ws) for path, ws in by_path.items()))

    async def _send_route(self, path: str, waiting: list[_Waiting]) -> None:
        timeouts = [w.timeout for w in waiting if w.timeout is not None]
        try:
            results = await self._sender.send(
                path, [w.entry for w in waiting], max(timeouts) if timeouts else None
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not the app's answer: retry rather than lose it
            log.exception("bulk delivery to %s failed", path)
            failed = DeliveryResult(DeliveryStatus.RETRY, None, f"bulk delivery failed: {exc}")
            results = {w.entry.entry_id: failed for w in waiting}
        for w in waiting:
            if not w.future.done():
                w.future.set_result(results[w.entry.entry_id])


def batcher_for(target: object, sub: TopicSubscription) -> BulkBatcher | None:
    """The bulk target for ``sub`` when it asks for bulk delivery and the app can take it
    (an HTTP or gRPC app, not a streaming subscription); ``None`` means one by one."""
    if not sub.bulk.enabled:
        return None
    sender: BulkSender
    if isinstance(target, HttpDelivery):
        sender = HttpBulkSender(target.channel)
    elif isinstance(target, GrpcDelivery):
        sender = GrpcBulkSender(target.channel)
    else:
        log.warning(
            "bulkSubscribe on %s/%s: bulk delivery goes to apps, not to streaming "
            "subscriptions; events are delivered one by one",
            sub.pubsub_name,
            sub.topic,
        )
        return None
    return BulkBatcher(sender, BulkSettings.of(sub))
