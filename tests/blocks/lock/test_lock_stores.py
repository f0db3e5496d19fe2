"""lock.redis (a real redis-server) and lock.sqlite: Dapr's lock semantics, through the
LockService the API doors call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)
from tandem.blocks.errors import DaprError
from tandem.blocks.lock.service import LockService
from tandem.blocks.lock.store import UnlockStatus
from tandem.blocks.registry import ComponentContext, ComponentSpec

KINDS = ("redis", "sqlite")


def spec(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ComponentSpec:
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return ComponentSpec("locks", "lock.redis", metadata={"redisHost": server.address})
    return ComponentSpec("locks", "lock.sqlite", metadata={"connectionString": str(tmp_path / "l")})


@pytest.fixture(params=KINDS)
async def two(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[LockService, LockService]]:
    """Two services over one backend, as two sidecars of one app would have."""
    ctx = ComponentContext(app_id="app", home=tmp_path)
    services = tuple(
        LockService.from_specs([spec(request.param, tmp_path, request)], ctx) for _ in range(2)
    )
    yield services  # type: ignore[misc]
    for s in services:
        await s.close()


def resource() -> str:
    return f"r-{uuid.uuid4().hex}"


async def test_one_owner_at_a_time_and_only_the_owner_unlocks(two) -> None:
    a, b = two
    r = resource()

    assert await a.try_lock("locks", r, "alice", 60)
    assert not await b.try_lock("locks", r, "bob", 60)
    assert await b.unlock("locks", r, "bob") == UnlockStatus.LOCK_BELONGS_TO_OTHERS
    assert await a.unlock("locks", r, "alice") == UnlockStatus.SUCCESS
    assert await a.unlock("locks", r, "alice") == UnlockStatus.LOCK_DOES_NOT_EXIST
    assert await b.try_lock("locks", r, "bob", 60)


async def test_expiry_frees_the_lock(two) -> None:
    a, b = two
    r = resource()
    assert await a.try_lock("locks", r, "alice", 1)

    deadline = time.monotonic() + 15
    while not await b.try_lock("locks", r, "bob", 60):
        assert time.monotonic() < deadline, "the expired lock was never freed"
        await asyncio.sleep(0.1)
    assert await a.unlock("locks", r, "alice") == UnlockStatus.LOCK_BELONGS_TO_OTHERS


async def test_two_owners_racing_never_both_hold_it(two) -> None:
    a, b = two
    r = resource()
    for _ in range(100):
        got = await asyncio.gather(
            a.try_lock("locks", r, "alice", 60), b.try_lock("locks", r, "bob", 60)
        )
        assert sorted(got) == [False, True]
        winner, owner = (a, "alice") if got[0] else (b, "bob")
        assert await winner.unlock("locks", r, owner) == UnlockStatus.SUCCESS


async def test_resource_ids_get_the_key_prefix(request: pytest.FixtureRequest, tmp_path) -> None:
    """Two apps with the default keyPrefix (appid) do not share a resource id."""
    base = spec("redis", tmp_path, request)
    app1 = LockService.from_specs([base], ComponentContext(app_id="one"))
    app2 = LockService.from_specs([base], ComponentContext(app_id="two"))
    r = resource()
    try:
        assert await app1.try_lock("locks", r, "x", 60)
        assert await app2.try_lock("locks", r, "x", 60)
    finally:
        await app1.close()
        await app2.close()


@pytest.mark.parametrize(
    ("resource_id", "owner", "expiry", "fragment"),
    [
        ("", "o", 10, "ResourceId is empty"),
        ("r", "", 10, "LockOwner is empty"),
        ("r", "o", 0, "ExpiryInSeconds is not positive"),
    ],
)
async def test_malformed_requests_are_refused(
    tmp_path: Path, resource_id: str, owner: str, expiry: int, fragment: str
) -> None:
    svc = LockService.from_specs(
        [spec("sqlite", tmp_path, None)],  # type: ignore[arg-type]
        ComponentContext(app_id="app", home=tmp_path),
    )
    try:
        with pytest.raises(DaprError, match=fragment) as err:
            await svc.try_lock("locks", resource_id, owner, expiry)
        assert (err.value.error_code, err.value.http_status) == ("ERR_MALFORMED_REQUEST", 400)
    finally:
        await svc.close()
