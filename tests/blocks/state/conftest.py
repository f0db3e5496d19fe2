"""State fixtures: one factory building a StateService over each store's real backend.

``store_kind`` parametrises the conformance suite: an on-disk SQLite file, a real
redis-server, a real PostgreSQL (``state.postgresql`` v1 and v2) and the process-local
in-memory store.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from state_helpers import STORE, MakeService

from servers import (  # noqa: F401  (fixture re-exports)
    PostgresServer,
    RedisServer,
    postgres_process,
    postgres_server,
    redis_server,
)
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.keys import KeyScheme
from tandem.blocks.state.service import StateComponent, StateService
from tandem.blocks.state.store import StateStore


@dataclass(frozen=True, slots=True)
class Kind:
    type: str
    version: str = "v1"
    server: str = ""  # the session fixture of the backend, if any


KINDS = {
    "sqlite": Kind("state.sqlite"),
    "redis": Kind("state.redis", server="redis_server"),
    "postgresql": Kind("state.postgresql", server="postgres_server"),
    "postgresql-v2": Kind("state.postgresql", "v2", server="postgres_server"),
    "in-memory": Kind("state.in-memory"),
}


def component_metadata(kind: str, tmp_path: Path, server: object) -> dict[str, str]:
    if kind == "sqlite":
        return {"connectionString": str(tmp_path / "state.db")}
    if kind == "redis":
        assert isinstance(server, RedisServer)
        return {"redisHost": server.address}
    if kind.startswith("postgresql"):
        assert isinstance(server, PostgresServer)
        table = "state" if kind == "postgresql" else "state_v2"
        return {"connectionString": server.url, "tableName": table}
    return {}


@pytest.fixture(params=list(KINDS))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_service(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakeService]:
    """``await make_service(app_id=..., **metadata)``; every call is a separate component
    instance (own connection / client / pool) over the same file or server, so two calls
    behave like two sidecars. Each test gets its own app id, hence its own key space.

    The in-memory store has no server to share: its instances all wrap the test's one
    store, each with its own key scheme (the closest thing to two sidecars over it)."""
    kind = KINDS[store_kind]
    server = request.getfixturevalue(kind.server) if kind.server else None
    default_app = f"app-{uuid.uuid4().hex[:12]}"
    made: list[StateService] = []
    shared: list[StateStore] = []

    async def make(app_id: str | None = None, namespace: str = "", **metadata: str) -> StateService:
        md = component_metadata(store_kind, tmp_path, server) | metadata
        spec = ComponentSpec(STORE, kind.type, kind.version, metadata=md)
        ctx = ComponentContext(
            app_id=default_app if app_id is None else app_id, namespace=namespace, home=tmp_path
        )
        if store_kind == "in-memory" and shared:
            keys = KeyScheme.from_metadata(STORE, md, ctx)
            return StateService([StateComponent(STORE, shared[0], keys, kind.type)])
        service = StateService.from_specs([spec], ctx)
        shared.append(service.components[STORE].store)
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()


@pytest.fixture
async def svc(make_service: MakeService) -> StateService:
    return await make_service()
