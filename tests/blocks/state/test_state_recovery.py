"""A store whose server goes away answers with Dapr's errors, never crashes, and serves
again on its own once the server is back on the same port — checked under load against
real Redis and PostgreSQL servers that are stopped and restarted."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from state_helpers import STORE

from servers import PostgresProcess, RedisProcess, run_redis_process
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import Concurrency, SetRequest

WORKERS = 8
STATE_CODES = {"ERR_STATE_GET", "ERR_STATE_SAVE", "ERR_STATE_TRANSACTION"}


@dataclass
class Load:
    """Workers doing save / get / transaction in a loop, counting what comes back."""

    svc: StateService
    ok: int = 0
    errors: Counter[tuple[str, int]] = field(default_factory=Counter)
    crashes: list[BaseException] = field(default_factory=list)
    running: bool = True

    async def worker(self, n: int) -> None:
        key = f"w{n}"
        i = 0
        while self.running:
            i += 1
            try:
                await self.svc.save(STORE, [SetRequest(key, str(i).encode())])
                await self.svc.get(STORE, key)
                await self.svc.transact(STORE, [SetRequest(key + "t", b"1")])
                self.ok += 1
            except DaprError as err:
                self.errors[(err.error_code, err.http_status)] += 1
                await asyncio.sleep(0.02)  # a client backing off, not a synchronisation point
            except Exception as exc:  # anything but a DaprError is a failure of the store
                self.crashes.append(exc)
                return

    async def until(self, what: str, check: Callable[[], bool], deadline_s: float = 30) -> None:
        end = time.monotonic() + deadline_s
        while not check():
            if self.crashes:
                raise AssertionError(f"store raised a non-Dapr error: {self.crashes[0]!r}")
            if time.monotonic() > end:
                raise AssertionError(f"{what} not reached in {deadline_s}s: {self}")
            await asyncio.sleep(0.05)


async def outage_and_recovery(
    svc: StateService, stop: Callable[[], None], start: Callable[[], None]
) -> Load:
    load = Load(svc)
    tasks = [asyncio.create_task(load.worker(n)) for n in range(WORKERS)]
    try:
        await load.until("traffic before the outage", lambda: load.ok >= 20)
        await asyncio.to_thread(stop)
        await load.until("errors during the outage", lambda: sum(load.errors.values()) >= 10)
        before = load.ok
        await asyncio.to_thread(start)
        await load.until("traffic after the restart", lambda: load.ok >= before + 50)
    finally:
        load.running = False
        await asyncio.gather(*tasks)
    assert not load.crashes, load.crashes
    assert {code for code, _ in load.errors} <= STATE_CODES, load.errors
    assert {status for _, status in load.errors} == {500}, load.errors
    # And etag semantics still hold after the reconnect.
    await svc.save(STORE, [SetRequest("after", b"1")])
    etag = (await svc.get(STORE, "after")).etag
    await svc.save(STORE, [SetRequest("after", b"2", etag, concurrency=Concurrency.FIRST_WRITE)])
    with pytest.raises(DaprError) as info:
        await svc.save(STORE, [SetRequest("after", b"3", etag)])
    assert info.value.http_status == 409
    return load


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis of this test's own: it is stopped and restarted."""
    with run_redis_process(tmp_path / "redis") as redis:
        yield redis


async def test_redis_outage_gives_dapr_errors_and_the_store_recovers_by_itself(
    redis_process: RedisProcess,
) -> None:
    md = {
        "redisHost": redis_process.server.address,
        "maxRetries": "1",
        "maxRetryBackoff": "50ms",
        "dialTimeout": "1s",
    }
    svc = StateService.from_specs(
        [ComponentSpec(STORE, "state.redis", metadata=md)], ComponentContext(app_id="app")
    )
    try:
        await outage_and_recovery(svc, redis_process.stop, redis_process.start)
    finally:
        await svc.close()


async def test_postgresql_outage_gives_dapr_errors_and_the_store_recovers_by_itself(
    postgres_process: PostgresProcess,
) -> None:
    """Uses the session's server: stopped and started again on the same port and data."""
    md = {"connectionString": postgres_process.server.url, "timeout": "5s"}
    ctx = ComponentContext(app_id=f"app-{uuid.uuid4().hex[:12]}")
    svc = StateService.from_specs([ComponentSpec(STORE, "state.postgresql", metadata=md)], ctx)
    await svc.save(STORE, [SetRequest("before", b"1")])
    try:
        await outage_and_recovery(svc, postgres_process.stop, postgres_process.start)
        assert (await svc.get(STORE, "before")).data == b"1"  # the data survived
    finally:
        await svc.close()
        if postgres_process.port and not postgres_process.running:
            postgres_process.start()
