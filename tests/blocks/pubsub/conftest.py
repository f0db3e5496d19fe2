"""Pub/sub fixtures: brokers of every kind over real storage (a SQLite file, real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pubsub_helpers import broker_metadata

from servers import redis_server, tansu_server  # noqa: F401  (fixture re-export)
from tandem.blocks.pubsub.broker import PubSub
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component

MakeBroker = Callable[..., Awaitable[PubSub]]


@pytest.fixture(params=["sqlite", "in-memory", "redis", "kafka"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def make_broker(
    broker_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakeBroker]:
    """``await make_broker(app_id=..., **metadata)``: a new component instance each call
    over the same file or server, like one more sidecar (in-memory: the same process, so
    calls share nothing — tests of several instances use the durable kinds)."""
    redis = request.getfixturevalue("redis_server") if broker_kind == "redis" else None
    kafka = request.getfixturevalue("tansu_server") if broker_kind == "kafka" else None
    made: list[Any] = []

    async def make(app_id: str = "app", **metadata: str) -> PubSub:
        md = broker_metadata(broker_kind, tmp_path, redis, kafka) | metadata
        spec = ComponentSpec("pubsub", f"pubsub.{broker_kind}", metadata=md)
        broker = create_component(spec, ComponentContext(app_id=app_id, home=tmp_path))
        made.append(broker)
        return broker  # type: ignore[no-any-return]

    yield make
    for broker in made:
        await broker.close()
