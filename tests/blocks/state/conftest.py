"""State fixtures: one factory building a StateService over a real sqlite file or Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from state_helpers import STORE, MakeService

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.service import StateService


def component_metadata(kind: str, tmp_path: Path, redis: RedisServer | None) -> dict[str, str]:
    if kind == "sqlite":
        return {"connectionString": str(tmp_path / "state.db")}
    assert redis is not None
    return {"redisHost": redis.address}


@pytest.fixture(params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_service(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakeService]:
    """``await make_service(app_id=..., **metadata)``; every call is a separate component
    instance (own connection / client) over the same file or server, so two calls behave
    like two sidecars. Each test gets its own app id, hence its own key space."""
    redis = request.getfixturevalue("redis_server") if store_kind == "redis" else None
    default_app = f"app-{uuid.uuid4().hex[:12]}"
    made: list[StateService] = []

    async def make(app_id: str | None = None, namespace: str = "", **metadata: str) -> StateService:
        md = component_metadata(store_kind, tmp_path, redis) | metadata
        spec = ComponentSpec(STORE, f"state.{store_kind}", metadata=md)
        ctx = ComponentContext(
            app_id=default_app if app_id is None else app_id, namespace=namespace, home=tmp_path
        )
        service = StateService.from_specs([spec], ctx)
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()


@pytest.fixture
async def svc(make_service: MakeService) -> StateService:
    return await make_service()
