"""The configuration API through the HTTP router and the gRPC functions: the same items,
the same Dapr errors (code, HTTP status, gRPC status), and a subscription that either
door can end."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest
from dapr.proto.runtime.v1 import configuration_pb2 as pb

from tandem.blocks.configuration.service import ConfigurationService
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.ext_proc import configuration_grpc, configuration_http
from tandem.ext_proc.api import ApiRequest
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[ConfigurationService]:
    db = tmp_path / "c.db"
    spec = ComponentSpec("conf", "configuration.sqlite", metadata={"connectionString": str(db)})
    service = ConfigurationService.from_specs([spec], ComponentContext(app_id="app"))
    await service.get("conf", [], {})
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO configuration (key, value, version) VALUES ('a', 'x', '3')")
    yield service
    await service.close()


async def http(svc: ConfigurationService, path: str, query: str = "") -> tuple[int, object]:
    router = Router()
    configuration_http.register(router, svc, lambda: None)
    resp = await Dispatcher(router)(ApiRequest("GET", path, query, app_id="app"))
    return resp.status, orjson.loads(resp.body) if resp.body else None


async def rpc(call) -> object:
    try:
        return await call
    except DaprError as err:
        return err.error_code, err.grpc_status


async def test_get_answers_alike(svc: ConfigurationService) -> None:
    assert await http(svc, "/v1.0/configuration/conf", "key=a&key=b") == (
        200,
        {"a": {"value": "x", "version": "3", "metadata": {}}},
    )
    got = await configuration_grpc.get(
        svc, pb.GetConfigurationRequest(store_name="conf", keys=["a"])
    )
    assert (got.items["a"].value, got.items["a"].version) == ("x", "3")


@pytest.mark.parametrize(
    ("configured", "code", "status", "grpc_status"),
    [
        (True, "ERR_CONFIGURATION_STORE_NOT_FOUND", 400, grpc.StatusCode.INVALID_ARGUMENT),
        (
            False,
            "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
            500,
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
async def test_errors_are_daprs_through_both(
    svc: ConfigurationService,
    configured: bool,
    code: str,
    status: int,
    grpc_status: grpc.StatusCode,
) -> None:
    service = svc if configured else ConfigurationService()
    got_status, body = await http(service, "/v1.0-alpha1/configuration/nope")
    assert (got_status, body["errorCode"]) == (status, code)  # type: ignore[index]
    req = pb.GetConfigurationRequest(store_name="nope")
    assert await rpc(configuration_grpc.get(service, req)) == (code, grpc_status)


async def test_http_subscribe_needs_the_app_channel(svc: ConfigurationService) -> None:
    status, body = await http(svc, "/v1.0/configuration/conf/subscribe", "key=a")
    assert (status, body["errorCode"]) == (500, "ERR_APP_CHANNEL_NIL")  # type: ignore[index]


@pytest.mark.parametrize("rpc_name", ["SubscribeConfiguration", "SubscribeConfigurationAlpha1"])
async def test_a_grpc_subscription_ends_when_unsubscribed_over_http(
    svc: ConfigurationService, rpc_name: str
) -> None:
    rpcs = configuration_grpc.rpcs(svc)
    stream = rpcs[rpc_name].handler(  # type: ignore[union-attr]
        _one(pb.SubscribeConfigurationRequest(store_name="conf", keys=["a"]))
    )
    first = await anext(stream)
    assert first.id and not first.items
    assert await http(svc, f"/v1.0/configuration/conf/{first.id}/unsubscribe") == (
        200,
        {"ok": True},
    )
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert await http(svc, f"/v1.0/configuration/conf/{first.id}/unsubscribe") == (
        500,
        {"ok": False, "message": f"subscription with id {first.id} does not exist"},
    )


async def _one(item: object) -> AsyncIterator[object]:
    yield item


async def test_store_calls_are_counted_under_daprs_names(svc: ConfigurationService) -> None:
    from tandem.observability.metrics import RuntimeMetrics

    svc.metrics = RuntimeMetrics("app")
    await http(svc, "/v1.0/configuration/conf", "key=a")

    assert (
        'dapr_component_configuration_count{app_id="app",component="conf",namespace="default",'
        'operation="get",success="true"} 1.0'
    ) in svc.metrics.render().decode()
