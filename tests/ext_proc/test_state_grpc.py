"""The state RPCs with real Dapr request protos, over an on-disk SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2

from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.service import StateService
from tandem.ext_proc import state_grpc

Options = common_pb2.StateOptions


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[StateService]:
    spec = ComponentSpec(
        "store", "state.sqlite", metadata={"connectionString": str(tmp_path / "s.db")}
    )
    service = StateService.from_specs([spec], ComponentContext(app_id="app", home=tmp_path))
    yield service
    await service.close()


def item(key: str, value: bytes, etag: str | None = None, **options: int) -> common_pb2.StateItem:
    msg = common_pb2.StateItem(key=key, value=value)
    if etag is not None:
        msg.etag.value = etag
    if options:
        msg.options.CopyFrom(Options(**options))  # type: ignore[arg-type]
    return msg


async def save(svc: StateService, *items: common_pb2.StateItem) -> None:
    await state_grpc.save_state(svc, state_pb2.SaveStateRequest(store_name="store", states=items))


async def get(svc: StateService, key: str) -> state_pb2.GetStateResponse:
    return await state_grpc.get_state(svc, state_pb2.GetStateRequest(store_name="store", key=key))


async def expect(
    code: str, grpc_status: grpc.StatusCode, awaitable: Awaitable[object]
) -> DaprError:
    with pytest.raises(DaprError) as info:
        await awaitable
    assert (info.value.error_code, info.value.grpc_status) == (code, grpc_status), info.value
    return info.value


async def test_saved_bytes_read_back_raw_with_etag(svc: StateService) -> None:
    await save(svc, item("k", b"\x00raw\xff"))
    resp = await get(svc, "k")
    assert resp.data == b"\x00raw\xff" and resp.etag


async def test_get_of_missing_key_returns_an_empty_response(svc: StateService) -> None:
    assert await get(svc, "missing") == state_pb2.GetStateResponse()


async def test_save_with_stale_etag_is_aborted(svc: StateService) -> None:
    await save(svc, item("k", b"1"))
    stale = (await get(svc, "k")).etag
    await save(svc, item("k", b"2"))
    await expect("ERR_STATE_SAVE", grpc.StatusCode.ABORTED, save(svc, item("k", b"3", stale)))
    assert (await get(svc, "k")).data == b"2"


async def test_save_with_invalid_etag_is_invalid_argument(svc: StateService) -> None:
    await expect(
        "ERR_STATE_SAVE", grpc.StatusCode.INVALID_ARGUMENT, save(svc, item("k", b"1", "x"))
    )


async def test_empty_etag_message_means_no_etag(svc: StateService) -> None:
    await save(svc, item("k", b"1"))
    await save(svc, item("k", b"2", ""))
    assert (await get(svc, "k")).data == b"2"


async def test_first_write_without_etag_on_existing_key_is_aborted(svc: StateService) -> None:
    await save(svc, item("k", b"1"))
    fw = item("k", b"2", concurrency=Options.CONCURRENCY_FIRST_WRITE)
    await expect("ERR_STATE_SAVE", grpc.StatusCode.ABORTED, save(svc, fw))


async def test_unknown_concurrency_enum_value_is_invalid_argument(svc: StateService) -> None:
    await expect(
        "ERR_MALFORMED_REQUEST",
        grpc.StatusCode.INVALID_ARGUMENT,
        save(svc, item("ok", b"1"), item("k", b"1", concurrency=7)),
    )
    assert (await get(svc, "ok")).data == b""


async def test_illegal_key_is_invalid_argument(svc: StateService) -> None:
    err = await expect(
        "ERR_MALFORMED_REQUEST", grpc.StatusCode.INVALID_ARGUMENT, save(svc, item("a||b", b"1"))
    )
    assert err.info is not None and err.info.reason == "DAPR_STATE_ILLEGAL_KEY"


async def test_unknown_store_is_invalid_argument(svc: StateService) -> None:
    await expect(
        "ERR_STATE_STORE_NOT_FOUND",
        grpc.StatusCode.INVALID_ARGUMENT,
        state_grpc.get_state(svc, state_pb2.GetStateRequest(store_name="nope", key="k")),
    )


async def test_bulk_get_returns_items_in_order(svc: StateService) -> None:
    await save(svc, item("a", b"1"), item("b", b"2"))
    resp = await state_grpc.get_bulk_state(
        svc, state_pb2.GetBulkStateRequest(store_name="store", keys=["b", "x", "a"], parallelism=3)
    )
    assert [(i.key, i.data) for i in resp.items] == [("b", b"2"), ("x", b""), ("a", b"1")]
    assert resp.items[0].etag == (await get(svc, "b")).etag


async def test_delete_with_etag(svc: StateService) -> None:
    await save(svc, item("k", b"1"))
    etag = (await get(svc, "k")).etag
    stale = state_pb2.DeleteStateRequest(
        store_name="store", key="k", etag=common_pb2.Etag(value="99")
    )
    await expect("ERR_STATE_DELETE", grpc.StatusCode.ABORTED, state_grpc.delete_state(svc, stale))
    ok = state_pb2.DeleteStateRequest(store_name="store", key="k", etag=common_pb2.Etag(value=etag))
    await state_grpc.delete_state(svc, ok)
    assert (await get(svc, "k")).data == b""


async def test_delete_bulk_removes_every_key(svc: StateService) -> None:
    await save(svc, item("a", b"1"), item("b", b"2"))
    req = state_pb2.DeleteBulkStateRequest(
        store_name="store", states=[common_pb2.StateItem(key="a"), common_pb2.StateItem(key="b")]
    )
    await state_grpc.delete_bulk_state(svc, req)
    assert (await get(svc, "a")).data == b"" and (await get(svc, "b")).data == b""


async def test_delete_bulk_with_stale_etag_is_aborted(svc: StateService) -> None:
    await save(svc, item("a", b"1"))
    req = state_pb2.DeleteBulkStateRequest(store_name="store", states=[item("a", b"", "424242")])
    await expect(
        "ERR_STATE_BULK_DELETE", grpc.StatusCode.ABORTED, state_grpc.delete_bulk_state(svc, req)
    )


def txn(*ops: tuple[str, common_pb2.StateItem]) -> state_pb2.ExecuteStateTransactionRequest:
    return state_pb2.ExecuteStateTransactionRequest(
        storeName="store",
        operations=[
            state_pb2.TransactionalStateOperation(operationType=kind, request=req)
            for kind, req in ops
        ],
    )


async def test_transaction_applies_upserts_and_deletes(svc: StateService) -> None:
    await save(svc, item("old", b"1"))
    await state_grpc.execute_state_transaction(
        svc, txn(("upsert", item("new", b"n")), ("delete", item("old", b"")))
    )
    assert (await get(svc, "new")).data == b"n" and (await get(svc, "old")).data == b""


async def test_transaction_with_unknown_operation_is_rejected_and_writes_nothing(
    svc: StateService,
) -> None:
    await expect(
        "ERR_NOT_SUPPORTED_STATE_OPERATION",
        grpc.StatusCode.INVALID_ARGUMENT,
        state_grpc.execute_state_transaction(
            svc, txn(("upsert", item("a", b"1")), ("get", item("b", b"")))
        ),
    )
    assert (await get(svc, "a")).data == b""


async def test_transaction_with_stale_etag_is_internal_and_writes_nothing(
    svc: StateService,
) -> None:
    await save(svc, item("b", b"1"))
    await expect(
        "ERR_STATE_TRANSACTION",
        grpc.StatusCode.INTERNAL,
        state_grpc.execute_state_transaction(
            svc, txn(("upsert", item("a", b"1")), ("upsert", item("b", b"2", "31337")))
        ),
    )
    assert (await get(svc, "a")).data == b"" and (await get(svc, "b")).data == b"1"


async def test_transaction_on_unknown_store_is_invalid_argument(svc: StateService) -> None:
    req = txn(("upsert", item("a", b"1")))
    req.storeName = "nope"
    await expect(
        "ERR_STATE_STORE_NOT_FOUND",
        grpc.StatusCode.INVALID_ARGUMENT,
        state_grpc.execute_state_transaction(svc, req),
    )


# -- query (alpha) ----------------------------------------------------------------------


def query(text: str | bytes, store: str = "store") -> state_pb2.QueryStateRequest:
    raw = text if isinstance(text, str) else text.decode()
    return state_pb2.QueryStateRequest(store_name=store, query=raw, metadata={"m": "v"})


async def test_query_returns_raw_bytes_etags_and_token(svc: StateService) -> None:
    await save(svc, item("a", b'{"n": 1}'), item("b", b'{"n": 2}'), item("c", b'{"n": 3}'))
    await save(svc, item("raw", b"\x00\xff"))
    text = '{"filter": {"GT": {"n": 1}}, "sort": [{"key": "n"}], "page": {"limit": 1}}'
    resp = await state_grpc.query_state_alpha1(svc, query(text))
    assert [(i.key, i.data) for i in resp.results] == [("b", b'{"n": 2}')]
    assert resp.results[0].etag == (await get(svc, "b")).etag and resp.token == "1"
    everything = await state_grpc.query_state_alpha1(svc, query("{}"))
    assert {i.key: i.data for i in everything.results}["raw"] == b"\x00\xff"


async def test_query_with_no_results_is_an_empty_response(svc: StateService) -> None:
    resp = await state_grpc.query_state_alpha1(svc, query('{"filter": {"EQ": {"n": 9}}}'))
    assert resp == state_pb2.QueryStateResponse()


async def test_malformed_query_is_internal_err_state_query(svc: StateService) -> None:
    await expect(
        "ERR_STATE_QUERY", grpc.StatusCode.INTERNAL, state_grpc.query_state_alpha1(svc, query("{"))
    )


async def test_query_of_unknown_store_is_invalid_argument(svc: StateService) -> None:
    await expect(
        "ERR_STATE_STORE_NOT_FOUND",
        grpc.StatusCode.INVALID_ARGUMENT,
        state_grpc.query_state_alpha1(svc, query("{}", store="nope")),
    )


def test_query_rpc_is_in_the_rpc_table(svc: StateService) -> None:
    assert "QueryStateAlpha1" in state_grpc.rpcs(svc)
