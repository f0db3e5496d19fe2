"""The state conformance suite: every state component must pass it against its real backend.

Runs through StateService (so Dapr's rules are part of what is checked) for each
``store_kind`` (see conftest.py): an on-disk SQLite file, a real redis-server, a real
PostgreSQL (v1 and v2) and the in-memory store. Query semantics: test_state_query.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

import pytest
from state_helpers import QUERY_KINDS, STORE, MakeService, eventually

from tandem.blocks.errors import DaprError
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import (
    Concurrency,
    DeleteRequest,
    Feature,
    GetRequest,
    SetRequest,
    TransactionOperation,
)

FW = Concurrency.FIRST_WRITE
LW = Concurrency.LAST_WRITE


async def value(svc: StateService, key: str) -> bytes | None:
    return (await svc.get(STORE, key)).data


async def expect_error(code: str, status: int, awaitable: Awaitable[object]) -> DaprError:
    with pytest.raises(DaprError) as info:
        await awaitable
    assert (info.value.error_code, info.value.http_status) == (code, status), info.value
    return info.value


# -- reads and etag generations ---------------------------------------------------------


async def test_get_of_missing_key_returns_no_data(svc: StateService) -> None:
    resp = await svc.get(STORE, "missing")
    assert resp.data is None and resp.etag is None


async def test_saved_value_reads_back_byte_for_byte_with_an_etag(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b'{"a": [1, 2]}')])
    resp = await svc.get(STORE, "k")
    assert resp.data == b'{"a": [1, 2]}'
    assert resp.etag


async def test_every_save_starts_a_new_etag_generation(svc: StateService) -> None:
    etags = []
    for i in range(5):
        await svc.save(STORE, [SetRequest("k", str(i).encode())])
        etags.append((await svc.get(STORE, "k")).etag)
    assert len(set(etags)) == 5


async def test_recreating_a_deleted_key_never_reuses_an_old_etag(
    svc: StateService, store_kind: str
) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    old = (await svc.get(STORE, "k")).etag
    await svc.delete(STORE, DeleteRequest("k"))
    await svc.save(STORE, [SetRequest("k", b"2")])
    if store_kind == "redis":
        # Dapr's Redis layout counts versions per key: a re-created key starts at 1 again.
        assert (await svc.get(STORE, "k")).etag == old == "1"
        return
    await expect_error("ERR_STATE_SAVE", 409, svc.save(STORE, [SetRequest("k", b"3", old)]))
    assert await value(svc, "k") == b"2"


async def test_redis_counts_etags_per_key_from_one(svc: StateService, store_kind: str) -> None:
    if store_kind != "redis":
        return  # the other stores draw versions from a store-wide sequence
    for key in ("a", "b", "c", "a"):
        await svc.save(STORE, [SetRequest(key, key.encode())])
    etags = {k: (await svc.get(STORE, k)).etag for k in "abc"}
    assert etags == {"a": "2", "b": "1", "c": "1"}
    await svc.transact(
        STORE,
        [SetRequest("b", b"b2"), SetRequest("b", b"b3"), DeleteRequest("c"), SetRequest("c", b"c")],
    )
    assert (await svc.get(STORE, "b")).etag == "3"
    assert (await svc.get(STORE, "c")).etag == "1"


async def test_save_with_current_etag_succeeds(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    etag = (await svc.get(STORE, "k")).etag
    await svc.save(STORE, [SetRequest("k", b"2", etag=etag, concurrency=FW)])
    assert await value(svc, "k") == b"2"


async def test_save_with_stale_etag_returns_409_and_keeps_value(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    stale = (await svc.get(STORE, "k")).etag
    await svc.save(STORE, [SetRequest("k", b"2")])
    err = await expect_error(
        "ERR_STATE_SAVE", 409, svc.save(STORE, [SetRequest("k", b"3", etag=stale)])
    )
    assert err.grpc_status.name == "ABORTED"
    assert await value(svc, "k") == b"2"


async def test_save_with_etag_for_missing_key_returns_409(svc: StateService) -> None:
    await expect_error("ERR_STATE_SAVE", 409, svc.save(STORE, [SetRequest("k", b"1", "1")]))
    assert await value(svc, "k") is None


async def test_save_with_malformed_etag_returns_400(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    await expect_error("ERR_STATE_SAVE", 400, svc.save(STORE, [SetRequest("k", b"2", "x1")]))
    assert await value(svc, "k") == b"1"


async def test_concurrent_saves_and_reads_each_get_their_own_answer(svc: StateService) -> None:
    """Calls in flight together (pipelined together by the Redis store) still succeed or
    fail one by one: one stale etag among fresh writes fails alone, reads see their key."""
    await asyncio.gather(*(svc.save(STORE, [SetRequest(f"c{i}", b"0")]) for i in range(8)))
    etags = [(await svc.get(STORE, f"c{i}")).etag for i in range(8)]
    stale = "999" if etags[3] != "999" else "998"
    saves = [
        svc.save(STORE, [SetRequest(f"c{i}", b"1", etag=stale if i == 3 else etags[i])])
        for i in range(8)
    ]
    results = await asyncio.gather(*saves, return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [3]
    err = results[3]
    assert isinstance(err, DaprError) and err.http_status == 409
    reads = await asyncio.gather(*(value(svc, f"c{i}") for i in range(8)))
    assert reads == [b"0" if i == 3 else b"1" for i in range(8)]


async def test_reads_and_last_writes_in_flight_together_each_get_their_key(
    svc: StateService,
) -> None:
    """Reads in flight together (one statement or pipeline in the SQL and Redis stores)
    each get their own key, missing and expired keys included; writes in flight together,
    two per key, all succeed and leave each key one of its values and a working etag."""
    await svc.save(STORE, [SetRequest("expired", b"x", metadata={"ttlInSeconds": "1"})])
    await svc.save(STORE, [SetRequest(f"r{i}", str(i).encode()) for i in range(6)])
    await eventually(lambda: _is_gone(svc, "expired"))
    keys = ["r0", "missing", "r1", "expired", "r2", "r3", "r0", "r4", "r5"]
    reads = await asyncio.gather(*(value(svc, key) for key in keys))
    assert reads == [b"0", None, b"1", None, b"2", b"3", b"0", b"4", b"5"]

    saves = [svc.save(STORE, [SetRequest(f"w{i % 5}", f"{i}".encode())]) for i in range(10)]
    assert await asyncio.gather(*saves) == [None] * 10
    got = await asyncio.gather(*(svc.get(STORE, f"w{i}") for i in range(5)))
    assert [r.data in (f"{i}".encode(), f"{i + 5}".encode()) for i, r in enumerate(got)] == [
        True
    ] * 5
    # The etag read back is the stored generation: a write holding it succeeds.
    await svc.save(STORE, [SetRequest("w0", b"next", etag=got[0].etag)])
    assert await value(svc, "w0") == b"next"


# -- first-write / last-write -----------------------------------------------------------


async def test_first_write_without_etag_creates_a_missing_key(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1", concurrency=FW)])
    assert await value(svc, "k") == b"1"


async def test_first_write_without_etag_on_existing_key_returns_409(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    await expect_error(
        "ERR_STATE_SAVE", 409, svc.save(STORE, [SetRequest("k", b"2", concurrency=FW)])
    )
    assert await value(svc, "k") == b"1"


async def test_last_write_without_etag_overwrites(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    await svc.save(STORE, [SetRequest("k", b"2", concurrency=LW)])
    await svc.save(STORE, [SetRequest("k", b"3")])
    assert await value(svc, "k") == b"3"


async def test_save_of_several_items_writes_each(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest(f"k{i}", str(i).encode()) for i in range(10)])
    items = await svc.bulk_get(STORE, [f"k{i}" for i in range(10)])
    assert [i.response.data for i in items if i.response] == [str(i).encode() for i in range(10)]


# -- delete -----------------------------------------------------------------------------


async def test_delete_without_etag_removes_key_and_is_idempotent(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    await svc.delete(STORE, DeleteRequest("k"))
    await svc.delete(STORE, DeleteRequest("k"))
    assert await value(svc, "k") is None


async def test_delete_with_current_etag_removes_key(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    etag = (await svc.get(STORE, "k")).etag
    await svc.delete(STORE, DeleteRequest("k", etag=etag))
    assert await value(svc, "k") is None


async def test_delete_with_stale_etag_returns_409_and_keeps_value(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    stale = (await svc.get(STORE, "k")).etag
    await svc.save(STORE, [SetRequest("k", b"2")])
    await expect_error("ERR_STATE_DELETE", 409, svc.delete(STORE, DeleteRequest("k", stale)))
    assert await value(svc, "k") == b"2"


async def test_delete_with_etag_of_missing_key_returns_409(svc: StateService) -> None:
    await expect_error("ERR_STATE_DELETE", 409, svc.delete(STORE, DeleteRequest("k", "7")))


async def test_delete_with_malformed_etag_returns_400(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    await expect_error("ERR_STATE_DELETE", 400, svc.delete(STORE, DeleteRequest("k", "abc")))
    assert await value(svc, "k") == b"1"


# -- TTL --------------------------------------------------------------------------------


def ttl(seconds: int) -> dict[str, str]:
    return {"ttlInSeconds": str(seconds)}


async def test_value_with_ttl_expires(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1", metadata=ttl(1))])
    assert await value(svc, "k") == b"1"
    await eventually(lambda: _is_gone(svc, "k"))
    # An expired key is absent for writes too: first-write may create it again.
    await svc.save(STORE, [SetRequest("k", b"2", concurrency=FW)])
    assert await value(svc, "k") == b"2"


async def test_ttl_minus_one_or_no_ttl_makes_an_earlier_ttl_permanent(svc: StateService) -> None:
    await svc.save(
        STORE, [SetRequest("a", b"1", metadata=ttl(1)), SetRequest("b", b"1", metadata=ttl(1))]
    )
    await svc.save(STORE, [SetRequest("a", b"2", metadata=ttl(-1)), SetRequest("b", b"2")])
    await svc.save(STORE, [SetRequest("witness", b"w", metadata=ttl(1))])
    await eventually(lambda: _is_gone(svc, "witness"))
    assert [await value(svc, "a"), await value(svc, "b")] == [b"2", b"2"]


@pytest.mark.parametrize("bad", ["soon", "1.5", "-2", str(2**31)])
async def test_non_integer_or_out_of_range_ttl_is_rejected_and_nothing_written(
    svc: StateService, bad: str
) -> None:
    items = [SetRequest("a", b"1"), SetRequest("b", b"1", metadata={"ttlInSeconds": bad})]
    await expect_error("ERR_STATE_SAVE", 500, svc.save(STORE, items))
    assert await value(svc, "a") is None


async def _is_gone(svc: StateService, key: str) -> bool:
    return await value(svc, key) is None


# -- bulk get ---------------------------------------------------------------------------


async def test_bulk_get_returns_items_in_request_order_with_missing_keys_empty(
    svc: StateService,
) -> None:
    await svc.save(STORE, [SetRequest("a", b"1"), SetRequest("c", b"3")])
    items = await svc.bulk_get(STORE, ["c", "missing", "a"], parallelism=2)
    assert [i.key for i in items] == ["c", "missing", "a"]
    assert [i.response.data if i.response else None for i in items] == [b"3", None, b"1"]
    assert items[0].response and items[0].response.etag == (await svc.get(STORE, "c")).etag
    assert await svc.bulk_get(STORE, []) == []


async def test_bulk_get_of_many_keys(svc: StateService) -> None:
    keys = [f"k{i}" for i in range(1200)]  # more than one SQL chunk
    await svc.transact(STORE, [SetRequest(k, k.encode()) for k in keys])
    items = await svc.bulk_get(STORE, keys)
    assert all(i.response and i.response.data == i.key.encode() for i in items)


# -- transactions -----------------------------------------------------------------------


async def test_transaction_applies_upserts_and_deletes(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("gone", b"x")])
    await svc.transact(STORE, [SetRequest("a", b"1"), SetRequest("b", b"2"), DeleteRequest("gone")])
    assert [await value(svc, k) for k in ("a", "b", "gone")] == [b"1", b"2", None]


async def test_transaction_with_one_stale_etag_writes_nothing(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("a", b"1"), SetRequest("b", b"1"), SetRequest("c", b"1")])
    stale = (await svc.get(STORE, "b")).etag
    await svc.save(STORE, [SetRequest("b", b"2")])
    ops: list[TransactionOperation] = [
        SetRequest("a", b"9"),
        SetRequest("b", b"9", etag=stale),
        DeleteRequest("c"),
    ]
    await expect_error("ERR_STATE_TRANSACTION", 500, svc.transact(STORE, ops))
    assert [await value(svc, k) for k in ("a", "b", "c")] == [b"1", b"2", b"1"]


async def test_transaction_failing_at_its_last_operation_leaves_no_partial_write(
    svc: StateService,
) -> None:
    await svc.save(STORE, [SetRequest("d0", b"old"), SetRequest("last", b"1")])
    ops: list[TransactionOperation] = [SetRequest(f"u{i}", b"new") for i in range(20)]
    ops += [DeleteRequest("d0"), SetRequest("d0", b"again"), SetRequest("last", b"2", "424242")]
    await expect_error("ERR_STATE_TRANSACTION", 500, svc.transact(STORE, ops))
    items = await svc.bulk_get(STORE, [f"u{i}" for i in range(20)])
    assert all(i.response is not None and i.response.data is None for i in items)
    assert [await value(svc, "d0"), await value(svc, "last")] == [b"old", b"1"]


async def test_transaction_with_first_write_on_existing_key_writes_nothing(
    svc: StateService,
) -> None:
    await svc.save(STORE, [SetRequest("b", b"1")])
    ops = [SetRequest("a", b"9"), SetRequest("b", b"9", concurrency=FW)]
    await expect_error("ERR_STATE_TRANSACTION", 500, svc.transact(STORE, ops))
    assert [await value(svc, k) for k in ("a", "b")] == [None, b"1"]


async def test_transaction_with_delete_of_stale_etag_writes_nothing(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("d", b"1")])
    ops: list[TransactionOperation] = [SetRequest("a", b"9"), DeleteRequest("d", etag="123456")]
    await expect_error("ERR_STATE_TRANSACTION", 500, svc.transact(STORE, ops))
    assert [await value(svc, k) for k in ("a", "d")] == [None, b"1"]


async def test_transaction_sees_its_own_earlier_operations(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("k", b"1")])
    ops: list[TransactionOperation] = [
        DeleteRequest("k"),
        SetRequest("k", b"2", concurrency=FW),
        SetRequest("x", b"x"),
    ]
    await svc.transact(STORE, ops)
    assert [await value(svc, k) for k in ("k", "x")] == [b"2", b"x"]


async def test_transaction_with_ttl_expires_its_upserts(svc: StateService) -> None:
    await svc.transact(STORE, [SetRequest("k", b"1", metadata=ttl(1))])
    await eventually(lambda: _is_gone(svc, "k"))


# -- key prefixes -----------------------------------------------------------------------


async def test_apps_do_not_see_each_others_keys(make_service: MakeService) -> None:
    a, b = await make_service(app_id="a-" + uuid.uuid4().hex), await make_service()
    await a.save(STORE, [SetRequest("k", b"a")])
    assert await value(b, "k") is None


@pytest.mark.parametrize(
    ("key_prefix", "namespace", "stored"),
    [
        ("appid", "", "{app}||{key}"),
        ("AppID", "", "{app}||{key}"),
        ("name", "", "store||{key}"),
        ("namespace", "prod", "prod.{app}||{key}"),
        ("namespace", "", "{app}||{key}"),
        ("none", "", "{key}"),
        ("custom-{app}", "", "custom-{app}||{key}"),
    ],
)
async def test_key_prefix_decides_the_stored_key(
    make_service: MakeService, key_prefix: str, namespace: str, stored: str
) -> None:
    app = "app-" + uuid.uuid4().hex
    key = "k-" + app  # unique even where the prefix is shared (name, none)
    svc = await make_service(app_id=app, namespace=namespace, keyPrefix=key_prefix.format(app=app))
    await svc.save(STORE, [SetRequest(key, b"v")])
    raw = stored.format(app=app, key=key)
    assert (await svc.components[STORE].store.get(GetRequest(raw))).data == b"v"


@pytest.mark.parametrize("key", ["", "a||b", "||"])
async def test_empty_and_separator_keys_are_rejected_before_the_store(
    svc: StateService, key: str
) -> None:
    err = await expect_error(
        "ERR_MALFORMED_REQUEST",
        400,
        svc.save(STORE, [SetRequest("ok", b"1"), SetRequest(key, b"1")]),
    )
    assert err.info is not None and err.info.reason == "DAPR_STATE_ILLEGAL_KEY"
    assert await value(svc, "ok") is None
    await expect_error("ERR_MALFORMED_REQUEST", 400, svc.get(STORE, key))
    await expect_error("ERR_MALFORMED_REQUEST", 400, svc.delete(STORE, DeleteRequest(key)))
    await expect_error("ERR_MALFORMED_REQUEST", 400, svc.bulk_get(STORE, ["ok", key]))
    await expect_error(
        "ERR_MALFORMED_REQUEST",
        400,
        svc.transact(STORE, [SetRequest("ok", b"1"), DeleteRequest(key)]),
    )


# -- features and concurrency -----------------------------------------------------------


async def test_store_declares_etag_transactional_ttl_and_is_an_actor_store(
    svc: StateService, store_kind: str
) -> None:
    # Dapr's capabilities for the same component types, plus QUERY_API where Tandem has it.
    expected = {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.KEYS_LIKE, Feature.ACTOR}
    if store_kind in QUERY_KINDS:
        expected.add(Feature.QUERY_API)
    if store_kind == "in-memory":
        expected.add(Feature.DELETE_WITH_PREFIX)
    assert svc.features(STORE) == expected


async def test_concurrent_first_write_updaters_never_lose_an_update(
    make_service: MakeService,
) -> None:
    """50 updaters over two component instances (two connections, like two sidecars) do
    read-modify-write with etags: each etag generation has exactly one winner."""
    app = "app-" + uuid.uuid4().hex
    sidecars = [await make_service(app_id=app), await make_service(app_id=app)]
    await sidecars[0].save(STORE, [SetRequest("counter", b"0")])
    winners: list[str] = []

    async def increment(svc: StateService) -> None:
        while True:
            current = await svc.get(STORE, "counter")
            assert current.data is not None and current.etag is not None
            nxt = str(int(current.data) + 1).encode()
            try:
                await svc.save(STORE, [SetRequest("counter", nxt, current.etag, concurrency=FW)])
            except DaprError as err:
                assert err.http_status == 409, err
                continue
            winners.append(current.etag)
            return

    await asyncio.wait_for(
        asyncio.gather(*(increment(sidecars[i % 2]) for i in range(50))), timeout=60
    )
    assert await value(sidecars[1], "counter") == b"50"
    assert len(winners) == len(set(winners)) == 50
