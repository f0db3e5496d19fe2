"""Delivery targets: where the subscriber core hands a routed event (an HTTP app, a gRPC
app's callback, a streaming subscription). The core only sees :class:`Delivery` in and
:class:`DeliveryResult` out; a :class:`BulkSender` sends a batch of them at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from tandem.blocks.pubsub import tracecontext


class DeliveryStatus(StrEnum):
    SUCCESS = "SUCCESS"  # processed: ack
    RETRY = "RETRY"  # failed or asked to retry
    DROP = "DROP"  # the app asked to drop it
    NOT_FOUND = "NOT_FOUND"  # the app has no such route (HTTP 404 / gRPC Unimplemented)


@dataclass(frozen=True, slots=True)
class Delivery:
    pubsub_name: str
    topic: str
    path: str
    event: Mapping[str, Any]  # the CloudEvent (synthetic for raw payloads)
    body: bytes  # what the app receives
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)  # broker message metadata
    traceparent: str = ""
    tracestate: str = ""
    # True when ``traceparent`` is the runtime's own delivery span (tracing on): the app's
    # request carries it as is, so the app's spans are its children.
    traceparent_is_span: bool = False

    def app_traceparent(self) -> str:
        """The ``traceparent`` of the request to the app."""
        return (
            self.traceparent if self.traceparent_is_span else tracecontext.child(self.traceparent)
        )


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    status: DeliveryStatus
    http_status: int | None = None
    detail: str = ""


class DeliveryTarget(Protocol):
    async def deliver(self, delivery: Delivery, timeout: float | None) -> DeliveryResult: ...


# The ``type`` of a bulk delivery (HTTP body and gRPC request alike).
BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"


@dataclass(frozen=True, slots=True)
class BulkEntry:
    entry_id: str
    delivery: Delivery


class BulkSender(Protocol):
    async def send(
        self, path: str, entries: Sequence[BulkEntry], timeout: float | None
    ) -> dict[str, DeliveryResult]:
        """Deliver one batch (all on ``path``); every entry id gets its result."""
        ...
