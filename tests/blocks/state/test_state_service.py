"""StateService rules that do not depend on the backend, and store failures as Dapr errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from servers import free_port
from tandem.blocks.component_metadata import ComponentConfigError
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.keys import KeyScheme
from tandem.blocks.state.service import StateComponent, StateService
from tandem.blocks.state.store import (
    BulkGetItem,
    DeleteRequest,
    Feature,
    GetRequest,
    GetResponse,
    SetRequest,
    StateStore,
    TransactionOperation,
)

CTX = ComponentContext(app_id="app")


class PlainStore:
    """A store with no optional features (not transactional, no etags)."""

    @property
    def features(self) -> frozenset[Feature]:
        return frozenset()

    async def get(self, req: GetRequest) -> GetResponse:
        return GetResponse(None)

    async def bulk_get(self, reqs: Sequence[GetRequest], parallelism: int) -> list[BulkGetItem]:
        return [BulkGetItem(r.key, GetResponse(None)) for r in reqs]

    async def set(self, req: SetRequest) -> None:
        raise AssertionError("not expected")

    async def delete(self, req: DeleteRequest) -> None:
        raise AssertionError("not expected")

    async def transact(
        self, ops: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        raise AssertionError("not expected")

    async def close(self) -> None:
        pass


def test_components_satisfy_the_state_store_protocol(tmp_path: Path) -> None:
    spec = ComponentSpec("s", "state.sqlite", metadata={"connectionString": str(tmp_path / "x")})
    svc = StateService.from_specs([spec], CTX)
    assert isinstance(svc.components["s"].store, StateStore)
    assert isinstance(PlainStore(), StateStore)


async def test_no_state_store_configured_is_a_500() -> None:
    with pytest.raises(DaprError) as info:
        await StateService([]).get("any", "k")
    assert (info.value.error_code, info.value.http_status) == (
        "ERR_STATE_STORE_NOT_CONFIGURED",
        500,
    )


async def test_unknown_state_store_is_a_400_with_resource_details() -> None:
    svc = StateService([StateComponent("s", PlainStore(), KeyScheme("s", "app"))])
    with pytest.raises(DaprError) as info:
        await svc.get("nope", "k")
    err = info.value
    assert (err.error_code, err.http_status) == ("ERR_STATE_STORE_NOT_FOUND", 400)
    assert err.info is not None and err.info.reason == "DAPR_STATE_NOT_FOUND"
    assert err.info.resource_name == "nope"


async def test_transaction_on_non_transactional_store_is_not_supported() -> None:
    svc = StateService([StateComponent("s", PlainStore(), KeyScheme("s", "app"))])
    with pytest.raises(DaprError) as info:
        await svc.transact("s", [SetRequest("k", b"1")])
    err = info.value
    assert (err.error_code, err.http_status) == ("ERR_STATE_STORE_NOT_SUPPORTED", 500)
    assert err.info is not None and err.info.reason == "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"


def test_actor_feature_needs_both_etag_and_transactional() -> None:
    svc = StateService([StateComponent("s", PlainStore(), KeyScheme("s", None))])
    assert Feature.ACTOR not in svc.features("s")


def test_custom_key_prefix_may_not_contain_the_separator() -> None:
    with pytest.raises(ComponentConfigError):
        KeyScheme.from_metadata("s", {"keyPrefix": "a||b"}, CTX)


def test_app_id_prefix_with_empty_app_id_stores_raw_keys() -> None:
    scheme = KeyScheme.from_metadata("s", {}, ComponentContext(app_id=""))
    assert scheme.stored("k") == "k"


async def test_unreachable_redis_becomes_dapr_500s_not_crashes() -> None:
    spec = ComponentSpec(
        "r",
        "state.redis",
        metadata={"redisHost": f"127.0.0.1:{free_port()}", "maxRetries": "1"},
    )
    svc = StateService.from_specs([spec], CTX)
    calls = [
        ("ERR_STATE_GET", svc.get("r", "k")),
        ("ERR_STATE_BULK_GET", svc.bulk_get("r", ["k"])),
        ("ERR_STATE_SAVE", svc.save("r", [SetRequest("k", b"1")])),
        ("ERR_STATE_DELETE", svc.delete("r", DeleteRequest("k"))),
        ("ERR_STATE_TRANSACTION", svc.transact("r", [SetRequest("k", b"1")])),
    ]
    for code, call in calls:
        with pytest.raises(DaprError) as info:
            await call
        assert (info.value.error_code, info.value.http_status) == (code, 500)
    await svc.close()


async def test_unopenable_sqlite_file_becomes_dapr_500s(tmp_path: Path) -> None:
    # A directory is not a database file: every call fails inside SQLite.
    spec = ComponentSpec("s", "state.sqlite", metadata={"connectionString": str(tmp_path)})
    svc = StateService.from_specs([spec], CTX)
    with pytest.raises(DaprError) as info:
        await svc.get("s", "k")
    assert (info.value.error_code, info.value.http_status) == ("ERR_STATE_GET", 500)
    with pytest.raises(DaprError) as info:
        await svc.save("s", [SetRequest("k", b"1")])
    assert (info.value.error_code, info.value.http_status) == ("ERR_STATE_SAVE", 500)
    await svc.close()


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from tandem.blocks.registry import ComponentContext, ComponentSpec
    from tandem.blocks.state.service import StateService
    from tandem.blocks.state.store import Concurrency, SetRequest
    from tandem.blocks.errors import DaprError

    async def main(path: str, n: int) -> None:
        spec = ComponentSpec("s", "state.sqlite", metadata={"connectionString": path})
        svc = StateService.from_specs([spec], ComponentContext(app_id="app"))
        for _ in range(n):
            while True:
                cur = await svc.get("s", "counter")
                nxt = str(int(cur.data or b"0") + 1).encode()
                try:
                    await svc.save("s", [SetRequest("counter", nxt, cur.etag,
                                                    concurrency=Concurrency.FIRST_WRITE)])
                    break
                except DaprError as err:
                    assert err.http_status == 409, err
        await svc.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def test_sqlite_processes_sharing_one_file_never_lose_an_update(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, db, "25"], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    import sqlite3

    with sqlite3.connect(db) as conn:
        (data,) = conn.execute("SELECT value FROM state WHERE key = 'app||counter'").fetchone()
    assert data == b"100"
