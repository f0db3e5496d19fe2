"""HTTP and gRPC parity: the same request through either front door has the same outcome —
the same Dapr error (code, HTTP status, gRPC status) or the same stored state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import SetRequest
from tandem.ext_proc import state_grpc, state_http
from tandem.ext_proc.api import ApiRequest
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router

FW = common_pb2.StateOptions.CONCURRENCY_FIRST_WRITE


@dataclass
class Doors:
    service: StateService
    dispatch: Dispatcher

    async def http(
        self, method: str, path: str, body: object = None, query: str = "", **headers: str
    ) -> tuple[str, int]:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        resp = await self.dispatch(ApiRequest(method, path, query, headers, raw, app_id="app"))
        if resp.status >= 400:
            return str(orjson.loads(resp.body)["errorCode"]), resp.status
        return "", resp.status

    async def grpc(self, call: Awaitable[object]) -> tuple[str, int, grpc.StatusCode | None]:
        try:
            await call
        except DaprError as err:
            return err.error_code, err.http_status, err.grpc_status
        return "", 0, None


@pytest.fixture
async def doors(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Doors]:
    redis: RedisServer = request.getfixturevalue("redis_server")
    specs = [
        ComponentSpec("store", "state.sqlite", metadata={"connectionString": str(tmp_path / "s")}),
        ComponentSpec("cache", "state.redis", metadata={"redisHost": redis.address}),
    ]
    service = StateService.from_specs(specs, ComponentContext(app_id="app", home=tmp_path))
    router = Router()
    state_http.register(router, service)
    yield Doors(service, Dispatcher(router))
    await service.close()


def item(key: str, value: bytes = b"1", etag: str | None = None, **md: str) -> common_pb2.StateItem:
    msg = common_pb2.StateItem(key=key, value=value, metadata=md)
    if etag is not None:
        msg.etag.value = etag
    return msg


def save_rpc(svc: StateService, *items: common_pb2.StateItem, store: str = "store") -> Any:
    return state_grpc.save_state(svc, state_pb2.SaveStateRequest(store_name=store, states=items))


def txn_rpc(svc: StateService, *ops: tuple[str, common_pb2.StateItem], store: str = "store") -> Any:
    req = state_pb2.ExecuteStateTransactionRequest(
        storeName=store,
        operations=[
            state_pb2.TransactionalStateOperation(operationType=k, request=r) for k, r in ops
        ],
    )
    return state_grpc.execute_state_transaction(svc, req)


Case = Callable[[Doors], tuple[Awaitable[tuple[str, int]], Awaitable[Any]]]


def case_unknown_store(d: Doors) -> Any:
    return d.http("POST", "/v1.0/state/nope", [{"key": "k", "value": 1}]), save_rpc(
        d.service, item("k"), store="nope"
    )


def case_illegal_key(d: Doors) -> Any:
    return d.http("POST", "/v1.0/state/store", [{"key": "a||b", "value": 1}]), save_rpc(
        d.service, item("a||b")
    )


def case_stale_etag(d: Doors) -> Any:
    return d.http("POST", "/v1.0/state/store", [{"key": "k", "value": 1, "etag": "99999"}]), (
        save_rpc(d.service, item("k", etag="99999"))
    )


def case_malformed_etag(d: Doors) -> Any:
    return d.http("POST", "/v1.0/state/store", [{"key": "k", "value": 1, "etag": "x"}]), (
        save_rpc(d.service, item("k", etag="x"))
    )


def case_bad_ttl(d: Doors) -> Any:
    body = [{"key": "k", "value": 1, "metadata": {"ttlInSeconds": "-5"}}]
    return d.http("POST", "/v1.0/state/store", body), save_rpc(
        d.service, item("k", ttlInSeconds="-5")
    )


def case_delete_stale_etag(d: Doors) -> Any:
    req = state_pb2.DeleteStateRequest(store_name="store", key="k")
    req.etag.value = "99999"
    return d.http("DELETE", "/v1.0/state/store/k", **{"if-match": "99999"}), (
        state_grpc.delete_state(d.service, req)
    )


def case_unknown_operation(d: Doors) -> Any:
    body = {"operations": [{"operation": "merge", "request": {"key": "k", "value": 1}}]}
    return d.http("POST", "/v1.0/state/store/transaction", body), txn_rpc(
        d.service, ("merge", item("k"))
    )


def case_transaction_stale_etag(d: Doors) -> Any:
    body = {
        "operations": [
            {"operation": "upsert", "request": {"key": "n", "value": 1}},
            {"operation": "delete", "request": {"key": "k", "etag": "99999"}},
        ]
    }
    return d.http("POST", "/v1.0/state/store/transaction", body), txn_rpc(
        d.service, ("upsert", item("n")), ("delete", item("k", etag="99999"))
    )


def case_malformed_query(d: Doors) -> Any:
    bad = b'{"filter": {"LIKE": {}}}'
    return d.http("POST", "/v1.0-alpha1/state/store/query", bad), state_grpc.query_state_alpha1(
        d.service, state_pb2.QueryStateRequest(store_name="store", query=bad.decode())
    )


def case_query_unsupported(d: Doors) -> Any:
    return d.http("PUT", "/v1.0-alpha1/state/cache/query", {}), state_grpc.query_state_alpha1(
        d.service, state_pb2.QueryStateRequest(store_name="cache", query="{}")
    )


def case_first_write_on_existing_key(d: Doors) -> Any:
    body = [{"key": "k", "value": 2, "options": {"concurrency": "first-write"}}]
    msg = item("k", b"2")
    msg.options.concurrency = FW
    return d.http("POST", "/v1.0/state/store", body), save_rpc(d.service, msg)


@pytest.mark.parametrize(
    ("case", "code", "http_status", "grpc_status"),
    [
        (case_unknown_store, "ERR_STATE_STORE_NOT_FOUND", 400, grpc.StatusCode.INVALID_ARGUMENT),
        (case_illegal_key, "ERR_MALFORMED_REQUEST", 400, grpc.StatusCode.INVALID_ARGUMENT),
        (case_stale_etag, "ERR_STATE_SAVE", 409, grpc.StatusCode.ABORTED),
        (case_malformed_etag, "ERR_STATE_SAVE", 400, grpc.StatusCode.INVALID_ARGUMENT),
        (case_bad_ttl, "ERR_STATE_SAVE", 500, grpc.StatusCode.INTERNAL),
        (case_first_write_on_existing_key, "ERR_STATE_SAVE", 409, grpc.StatusCode.ABORTED),
        (case_delete_stale_etag, "ERR_STATE_DELETE", 409, grpc.StatusCode.ABORTED),
        (
            case_unknown_operation,
            "ERR_NOT_SUPPORTED_STATE_OPERATION",
            400,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (case_transaction_stale_etag, "ERR_STATE_TRANSACTION", 500, grpc.StatusCode.INTERNAL),
        (case_malformed_query, "ERR_STATE_QUERY", 500, grpc.StatusCode.INTERNAL),
        (case_query_unsupported, "ERR_STATE_STORE_NOT_SUPPORTED", 500, grpc.StatusCode.INTERNAL),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
async def test_both_doors_refuse_alike_and_change_nothing(
    doors: Doors, case: Case, code: str, http_status: int, grpc_status: grpc.StatusCode
) -> None:
    await doors.service.save("store", [SetRequest("k", b'"kept"')])
    http_call, grpc_call = case(doors)
    assert await http_call == (code, http_status)
    assert await doors.grpc(grpc_call) == (code, http_status, grpc_status)
    assert (await doors.service.get("store", "k")).data == b'"kept"'
    assert (await doors.service.get("store", "n")).data is None
