"""Small tools for pub/sub tests: a recording handler and waiting with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from servers import KafkaServer, RedisServer
from tandem.blocks.pubsub.broker import Message, Outcome
from tandem.resources import Resiliency, RetryPolicy

FAST = {"redeliverInterval": "50ms", "processingTimeout": "500ms"}


def retrying(max_retries: int = 5, every: float = 0.001) -> list[Resiliency]:
    """A Resiliency whose default retry policy (it covers pub/sub deliveries) retries
    ``max_retries`` times, ``every`` seconds apart: without one, Dapr does not retry."""
    policy = RetryPolicy(duration=timedelta(seconds=every), max_retries=max_retries)
    return [Resiliency(name="test-retries", retries={"DefaultRetryPolicy": policy})]


def broker_metadata(
    kind: str, tmp_path: Path, redis: RedisServer | None, kafka: KafkaServer | None = None
) -> dict[str, str]:
    if kind == "sqlite":
        return {"connectionString": str(tmp_path / "pubsub.db")}
    if kind == "redis":
        assert redis is not None
        return {"redisHost": redis.address}
    if kind == "kafka":
        assert kafka is not None
        # tansu holds group joins for about the session timeout: keep it short.
        timeouts = {"sessionTimeout": "1s", "heartbeatInterval": "300ms"}
        return {"brokers": kafka.brokers, "authType": "none", **timeouts}
    return {}


class Recorder:
    """A handler that records what it gets; ``decide`` picks each outcome."""

    def __init__(self, decide: Callable[[Message], Outcome] | None = None) -> None:
        self.messages: list[Message] = []
        self._decide = decide or (lambda m: Outcome.SUCCESS)
        self._changed = asyncio.Event()

    async def __call__(self, msg: Message) -> Outcome:
        self.messages.append(msg)
        self._changed.set()
        return self._decide(msg)

    @property
    def payloads(self) -> list[bytes]:
        return [m.data for m in self.messages]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        async def reached() -> None:
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"got {len(self.messages)} of {count} messages within {timeout}s"
            ) from None
        return self.messages


class Blocker:
    """A handler that never finishes: it holds every message it gets."""

    def __init__(self) -> None:
        self.got: list[Message] = []
        self.started = asyncio.Event()

    async def __call__(self, msg: Message) -> Outcome:
        self.got.append(msg)
        self.started.set()
        await asyncio.Event().wait()
        return Outcome.SUCCESS
