"""APIs not built yet fail one way: HTTP 501 ERR_API_UNIMPLEMENTED naming the API, gRPC
UNIMPLEMENTED naming it; a real route under the same prefix still wins."""

from __future__ import annotations

import orjson
import pytest
from dapr.proto.runtime.v1 import dapr_pb2

from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.grpc_api import DaprGrpcServicer
from tandem.ext_proc.router import Router
from tandem.ext_proc.unimplemented import api_of, grpc_message_for, register_http


@pytest.fixture
def dispatch() -> Dispatcher:
    router = Router()
    register_http(router)

    async def real(req: ApiRequest) -> ApiResponse:
        return ApiResponse.json({"served": req.params})

    # As a block adds its routes once built (after the 501s): they take precedence.
    router.add("POST", "/v1.0/bindings/{name}", real)
    router.add("POST", "/v1.0/shutdown", real)
    return Dispatcher(router)


@pytest.mark.parametrize(
    ("method", "path", "api"),
    [
        ("GET", "/v1.0/secrets/vault/db-password", "secrets"),
        ("GET", "/v1.0/secrets/vault/bulk", "secrets"),
        ("GET", "/v1.0/configuration/cfg?key=a", "configuration"),
        ("GET", "/v1.0-alpha1/configuration/cfg/subscribe", "configuration"),
        ("POST", "/v1.0-alpha1/lock/lockstore", "distributed lock"),
        ("POST", "/v1.0-alpha1/unlock/lockstore", "distributed lock"),
        ("POST", "/v1.0-alpha1/jobs/nightly", "jobs"),
        ("DELETE", "/v1.0/jobs/nightly", "jobs"),
        ("PUT", "/v1.0-alpha1/crypto/keys/encrypt", "cryptography"),
        ("POST", "/v1.0-alpha1/subtlecrypto/keys/sign", "cryptography"),
        ("POST", "/v1.0-alpha2/conversation/llm/converse", "conversation"),
        ("GET", "/v1.0/bindings/checkout", "bindings"),  # no GET route even once built
        ("GET", "/v1.0/shutdown", "shutdown"),
    ],
)
async def test_every_unbuilt_route_is_a_501_naming_its_api(dispatch, method, path, api):
    path, _, query = path.partition("?")
    resp = await dispatch(ApiRequest(method=method, path=path, query=query))
    assert resp.status == 501
    body = orjson.loads(resp.body)
    assert body["errorCode"] == "ERR_API_UNIMPLEMENTED"
    assert f"the {api} API is not implemented" in body["message"]


async def test_a_built_route_under_an_unbuilt_prefix_is_served(dispatch):
    resp = await dispatch(ApiRequest(method="POST", path="/v1.0/bindings/checkout"))
    assert resp.status == 200
    assert orjson.loads(resp.body) == {"served": {"name": "checkout"}}
    resp = await dispatch(ApiRequest(method="POST", path="/v1.0/shutdown"))
    assert resp.status == 200


async def test_unknown_paths_stay_404(dispatch):
    resp = await dispatch(ApiRequest(method="GET", path="/v1.0/nothing-here"))
    assert resp.status == 404


def test_every_dapr_grpc_method_belongs_to_a_named_api():
    # A method from a proto file we have not named would be reported by its bare name.
    for method in dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods:
        assert api_of(method) != method.name, method.name


def test_grpc_message_names_the_api_and_the_method():
    assert grpc_message_for("InvokeBinding") == (
        "the bindings API is not implemented by this Tandem runtime yet (InvokeBinding)"
    )
    assert "the workflows API" in grpc_message_for("StartWorkflowBeta1")
    assert "the actors API" in grpc_message_for("ListActorTimers")


def test_servicer_answers_every_unserved_method():
    from tandem.blocks.metadata import MetadataService

    servicer = DaprGrpcServicer(MetadataService(app_id="a"))
    for method in dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods:
        assert callable(getattr(servicer, method.name))
