"""The contract between the pub/sub building block and its components (brokers).

A component moves opaque bytes: the CloudEvent envelope, routing, retries and dead letters
are the block's work (:mod:`.service`, :mod:`.subscriber`), so every broker stays small
and one conformance suite can hold them all to the same delivery guarantees.

Delivery invariant (at-least-once): a message
published and acknowledged to the publisher is handed to one consumer of every consumer
group subscribed to its topic, again and again until a handler returns SUCCESS or DROP.
A consumer that dies holding a message gives it back: its lease expires (or, for the
embedded broker, its process is seen to be gone) and another consumer of the group gets it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Feature(StrEnum):
    """Capabilities a pub/sub component declares (Dapr's names, shown by the metadata API)."""

    MESSAGE_TTL = "MESSAGE_TTL"
    SUBSCRIBE_WILDCARDS = "SUBSCRIBE_WILDCARDS"
    # Dapr's string for a component with a native bulk publish (the API works on any).
    BULK_PUBLISH = "BULK_PUBSUB"


class Outcome(StrEnum):
    """What a subscription handler decided about one message."""

    SUCCESS = "SUCCESS"  # processed: acknowledge
    RETRY = "RETRY"  # not processed: the broker redelivers it later
    DROP = "DROP"  # give up on it (the block already dead-lettered it): acknowledge


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a broker delivers it. ``id`` is the broker's id (stream id, row id)."""

    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    id: str = ""
    # How many times this message was handed out before this delivery (0 = first time).
    redeliveries: int = 0


Handler = Callable[[Message], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """``group`` overrides the component's consumer group (``consumerID``, default app id)."""

    group: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishEntry:
    """One message of a bulk publish."""

    entry_id: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


class SubscriptionHandle(Protocol):
    async def close(self, grace: float = 5.0) -> None:
        """Stop fetching; wait up to ``grace`` seconds for handlers in flight, then give
        back (unacknowledged) whatever is still held, so another consumer gets it."""
        ...


@runtime_checkable
class PubSub(Protocol):
    """One configured pub/sub component."""

    @property
    def features(self) -> frozenset[Feature]: ...

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        """Store the message durably (as durable as the broker is) before returning."""
        ...

    async def bulk_publish(self, topic: str, entries: Sequence[PublishEntry]) -> list[str]:
        """Publish many; returns the entry ids that failed (empty when all succeeded)."""
        ...

    async def subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> SubscriptionHandle:
        """Start delivering ``topic`` to ``handler``; returns once the subscription is in
        place, so a message published after this returns is delivered. The handler's
        outcome drives acknowledgement; an exception counts as RETRY."""
        ...

    async def close(self) -> None: ...
