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
    router.add("POST", "/v1.0-beta1/workflows/dapr/{name}/start", real)
    return Dispatcher(router)


async def test_a_built_route_under_an_unbuilt_prefix_is_served(dispatch):
    resp = await dispatch(ApiRequest(method="POST", path="/v1.0-beta1/workflows/dapr/order/start"))
    assert resp.status == 200
    assert orjson.loads(resp.body) == {"served": {"name": "order"}}


async def test_unknown_paths_stay_404(dispatch):
    resp = await dispatch(ApiRequest(method="GET", path="/v1.0/nothing-here"))
    assert resp.status == 404


def test_every_dapr_grpc_method_belongs_to_a_named_api():
    # A method from a proto file we have not named would be reported by its bare name.
    for method in dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods:
        assert api_of(method) != method.name, method.name


def test_grpc_message_names_the_api_and_the_method():
    assert grpc_message_for("TryLockAlpha1") == (
        "the distributed lock API is not implemented by this Tandem runtime yet (TryLockAlpha1)"
    )
    assert "the workflows API" in grpc_message_for("StartWorkflowBeta1")
    assert "the actors API" in grpc_message_for("ListActorTimers")


def test_servicer_answers_every_unserved_method():
    from tandem.blocks.metadata import MetadataService

    servicer = DaprGrpcServicer(MetadataService(app_id="a"))
    for method in dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods:
        assert callable(getattr(servicer, method.name))
