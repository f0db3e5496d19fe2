from __future__ import annotations

import pytest

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router


def _handler(tag: str):
    async def h(req: ApiRequest) -> ApiResponse:
        return ApiResponse.json({"tag": tag, "params": req.params})

    return h


@pytest.fixture
def router() -> Router:
    r = Router()
    r.add("GET", "/v1.0/state/{store}/{key}", _handler("get"))
    r.add(("POST", "PUT"), "/v1.0/state/{store}/bulk", _handler("bulk"))
    r.add(("POST", "PUT"), "/v1.0/publish/{pubsub}/{topic...}", _handler("publish"))
    r.add("GET", "/v1.0/healthz", _handler("health"))
    return r


@pytest.mark.parametrize(
    ("method", "path", "tag", "params"),
    [
        ("GET", "/v1.0/state/s/k1", "get", {"store": "s", "key": "k1"}),
        ("POST", "/v1.0/state/s/bulk", "bulk", {"store": "s"}),
        # A key literally named "bulk" is still a key for GET, as in Dapr.
        ("GET", "/v1.0/state/s/bulk", "get", {"store": "s", "key": "bulk"}),
        ("GET", "/v1.0/state/s/a%20b", "get", {"store": "s", "key": "a b"}),
        (
            "POST",
            "/v1.0/publish/ps/orders/eu/new",
            "publish",
            {"pubsub": "ps", "topic": "orders/eu/new"},
        ),
        ("GET", "/v1.0/healthz", "health", {}),
    ],
)
async def test_resolves_method_and_path_to_handler_with_params(router, method, path, tag, params):
    req = ApiRequest(method=method, path=path)
    resp = await router.resolve(req)(req)
    assert resp.status == 200
    assert req.params == params
    assert tag.encode() in resp.body


def test_unknown_path_is_a_dapr_404(router):
    with pytest.raises(DaprError) as info:
        router.resolve(ApiRequest(method="GET", path="/v1.0/nope"))
    assert info.value.http_status == 404
    assert info.value.to_json()["errorCode"]


def test_wrong_method_is_a_dapr_405(router):
    with pytest.raises(DaprError) as info:
        router.resolve(ApiRequest(method="DELETE", path="/v1.0/healthz"))
    assert info.value.http_status == 405


def test_rest_parameters_of_one_path_must_share_a_name():
    r = Router()
    r.add("GET", "/v1.0/things/{rest...}", _handler("a"))
    with pytest.raises(ValueError, match="clashes"):
        r.add("POST", "/v1.0/things/{name...}", _handler("b"))
