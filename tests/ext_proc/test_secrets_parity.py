"""The secrets API through the HTTP router and the gRPC functions: same answers, same
Dapr errors (code, HTTP status, gRPC status), scopes applied alike."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import orjson
import pytest
from dapr.proto.runtime.v1 import secret_pb2

from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.secrets.service import SecretsService
from tandem.ext_proc import secrets_grpc, secrets_http
from tandem.ext_proc.api import ApiRequest
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router
from tandem.resources.configuration import SecretScope


def service(tmp_path: Path, scopes: tuple[SecretScope, ...] = ()) -> SecretsService:
    file = tmp_path / "s.json"
    file.write_text(json.dumps({"open": "1", "closed": "2", "nested": {"k": "v"}}))
    spec = ComponentSpec("files", "secretstores.local.file", metadata={"secretsFile": str(file)})
    store = create_component(spec, ComponentContext(app_id="app"))
    return SecretsService({"files": store}, {"files": spec.type}, scopes)


async def http(svc: SecretsService, path: str) -> tuple[int, object]:
    router = Router()
    secrets_http.register(router, svc)
    resp = await Dispatcher(router)(ApiRequest("GET", path, app_id="app"))
    return resp.status, orjson.loads(resp.body) if resp.body else None


async def grpc_get(svc: SecretsService, store: str, key: str) -> object:
    try:
        resp = await secrets_grpc.get_secret(
            svc, secret_pb2.GetSecretRequest(store_name=store, key=key)
        )
    except DaprError as err:
        return err.error_code, err.grpc_status
    return dict(resp.data)


async def test_get_and_bulk_answer_the_same_through_both(tmp_path: Path) -> None:
    svc = service(tmp_path)

    assert await http(svc, "/v1.0/secrets/files/nested:k") == (200, {"nested:k": "v"})
    assert await grpc_get(svc, "files", "nested:k") == {"nested:k": "v"}
    status, body = await http(svc, "/v1.0/secrets/files/bulk")
    bulk = await secrets_grpc.get_bulk_secret(
        svc, secret_pb2.GetBulkSecretRequest(store_name="files")
    )
    assert status == 200
    assert body == {k: dict(v.secrets) for k, v in bulk.data.items()}
    assert body == {"open": {"open": "1"}, "closed": {"closed": "2"}, "nested:k": {"nested:k": "v"}}


@pytest.mark.parametrize(
    ("stores", "store", "key", "code", "status", "grpc_status"),
    [
        (True, "nope", "open", "ERR_SECRET_STORE_NOT_FOUND", 401, grpc.StatusCode.INVALID_ARGUMENT),
        (True, "files", "absent", "ERR_SECRET_GET", 500, grpc.StatusCode.INTERNAL),
        (True, "files", "closed", "ERR_PERMISSION_DENIED", 403, grpc.StatusCode.PERMISSION_DENIED),
        (
            False,
            "files",
            "open",
            "ERR_SECRET_STORES_NOT_CONFIGURED",
            500,
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
async def test_errors_are_daprs_through_both(
    tmp_path: Path,
    stores: bool,
    store: str,
    key: str,
    code: str,
    status: int,
    grpc_status: grpc.StatusCode,
) -> None:
    scopes = (SecretScope("files", denied_secrets=("closed",)),)
    svc = service(tmp_path, scopes) if stores else SecretsService()

    got_status, body = await http(svc, f"/v1.0/secrets/{store}/{key}")
    assert (got_status, body["errorCode"]) == (status, code)  # type: ignore[index]
    assert await grpc_get(svc, store, key) == (code, grpc_status)


async def test_scopes_leave_denied_secrets_out_of_bulk(tmp_path: Path) -> None:
    scopes = (SecretScope("files", default_access="deny", allowed_secrets=("open",)),)
    svc = service(tmp_path, scopes)

    assert await http(svc, "/v1.0/secrets/files/bulk") == (200, {"open": {"open": "1"}})
    assert await grpc_get(svc, "files", "nested:k") == (
        "ERR_PERMISSION_DENIED",
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_store_calls_are_counted_under_daprs_names(tmp_path: Path) -> None:
    from tandem.observability.metrics import RuntimeMetrics

    svc = service(tmp_path)
    svc.metrics = RuntimeMetrics("app")
    await http(svc, "/v1.0/secrets/files/open")
    await http(svc, "/v1.0/secrets/files/absent")
    await http(svc, "/v1.0/secrets/files/bulk")

    text = svc.metrics.render().decode()
    for op, success in (("get", "true"), ("get", "false"), ("bulk_get", "true")):
        line = (
            f'dapr_component_secret_count{{app_id="app",component="files",namespace="default",'
            f'operation="{op}",success="{success}"}} 1.0'
        )
        assert line in text, text
