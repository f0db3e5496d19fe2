"""The lock API through the HTTP router and the gRPC functions: same answers and the same
Dapr errors (code, HTTP status, gRPC status)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest
from dapr.proto.runtime.v1 import lock_pb2

from tandem.blocks.errors import DaprError
from tandem.blocks.lock.service import LockService
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.ext_proc import lock_grpc, lock_http
from tandem.ext_proc.api import ApiRequest
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[LockService]:
    spec = ComponentSpec("locks", "lock.sqlite", metadata={"connectionString": str(tmp_path / "l")})
    service = LockService.from_specs([spec], ComponentContext(app_id="app", home=tmp_path))
    yield service
    await service.close()


async def http(svc: LockService, path: str, body: object) -> tuple[int, dict]:
    router = Router()
    lock_http.register(router, svc)
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await Dispatcher(router)(ApiRequest("POST", path, body=raw, app_id="app"))
    return resp.status, orjson.loads(resp.body)


async def rpc(call) -> object:
    try:
        return await call
    except DaprError as err:
        return err.error_code, err.grpc_status


async def test_lock_and_unlock_answer_alike(svc: LockService) -> None:
    body = {"resourceId": "r1", "lockOwner": "a", "expiryInSeconds": 30}
    assert await http(svc, "/v1.0-alpha1/lock/locks", body) == (200, {"success": True})
    other = lock_pb2.TryLockRequest(
        store_name="locks", resource_id="r1", lock_owner="b", expiry_in_seconds=30
    )
    assert (await lock_grpc.try_lock(svc, other)).success is False
    assert await http(svc, "/v1.0-alpha1/unlock/locks", {"resourceId": "r1", "lockOwner": "b"}) == (
        200,
        {"status": 2},
    )
    mine = lock_pb2.UnlockRequest(store_name="locks", resource_id="r1", lock_owner="a")
    assert (await lock_grpc.unlock(svc, mine)).status == lock_pb2.UnlockResponse.SUCCESS
    assert (await lock_grpc.unlock(svc, mine)).status == lock_pb2.UnlockResponse.LOCK_DOES_NOT_EXIST


@pytest.mark.parametrize(
    ("store", "body", "code", "status", "grpc_status"),
    [
        (
            "nope",
            {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5},
            "ERR_LOCK_STORE_NOT_FOUND",
            400,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "locks",
            {"resourceId": "", "lockOwner": "o", "expiryInSeconds": 5},
            "ERR_MALFORMED_REQUEST",
            400,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "locks",
            {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": -1},
            "ERR_MALFORMED_REQUEST",
            400,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_errors_are_daprs_through_both(
    svc: LockService,
    store: str,
    body: dict,
    code: str,
    status: int,
    grpc_status: grpc.StatusCode,
) -> None:
    got_status, got = await http(svc, f"/v1.0-alpha1/lock/{store}", body)
    assert (got_status, got["errorCode"]) == (status, code)
    req = lock_pb2.TryLockRequest(
        store_name=store,
        resource_id=body["resourceId"],
        lock_owner=body["lockOwner"],
        expiry_in_seconds=body["expiryInSeconds"],
    )
    assert await rpc(lock_grpc.try_lock(svc, req)) == (code, grpc_status)


async def test_no_lock_store_and_a_bad_body(svc: LockService) -> None:
    status, body = await http(LockService(), "/v1.0-alpha1/lock/x", {})
    assert (status, body["errorCode"]) == (500, "ERR_LOCK_STORE_NOT_CONFIGURED")
    req = lock_pb2.TryLockRequest(store_name="x", resource_id="r", lock_owner="o")
    assert await rpc(lock_grpc.try_lock(LockService(), req)) == (
        "ERR_LOCK_STORE_NOT_CONFIGURED",
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    status, body = await http(svc, "/v1.0-alpha1/lock/locks", b"{not json")
    assert (status, body["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
