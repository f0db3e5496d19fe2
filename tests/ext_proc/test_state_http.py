"""The state HTTP API as an app sees it: routes, status codes, headers and bodies.

Requests go through the real router and dispatcher (no Envoy) to a StateService over an
on-disk SQLite store; every rejected request is checked to have changed nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import SetRequest
from tandem.ext_proc import state_http
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router

BASE = "/v1.0/state/store"


@dataclass
class Api:
    dispatch: Dispatcher
    service: StateService

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw: bytes | None = None,
        query: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> ApiResponse:
        data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
        req = ApiRequest(method, path, query, dict(headers or {}), data, app_id="app")
        return await self.dispatch(req)

    async def stored(self, key: str) -> bytes | None:
        return (await self.service.get("store", key)).data


def error_code(resp: ApiResponse) -> str:
    return str(orjson.loads(resp.body)["errorCode"])


def header(resp: ApiResponse, name: str) -> bytes | None:
    return dict(resp.headers).get(name)


def service_for(tmp_path: Path) -> StateService:
    spec = ComponentSpec(
        "store", "state.sqlite", metadata={"connectionString": str(tmp_path / "s.db")}
    )
    return StateService.from_specs([spec], ComponentContext(app_id="app", home=tmp_path))


def api_for(service: StateService) -> Api:
    router = Router()
    state_http.register(router, service)
    return Api(Dispatcher(router), service)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    service = service_for(tmp_path)
    yield api_for(service)
    await service.close()


# -- save and get -----------------------------------------------------------------------


async def test_save_returns_204_and_get_returns_the_json_value_with_etag(api: Api) -> None:
    resp = await api.call("POST", BASE, [{"key": "k", "value": "v"}])
    assert (resp.status, resp.body) == (204, b"")
    got = await api.call("GET", f"{BASE}/k")
    assert (got.status, got.body, got.content_type) == (200, b'"v"', b"application/json")
    assert header(got, "etag") == (await api.service.get("store", "k")).etag.encode()  # type: ignore[union-attr]


async def test_save_stores_objects_as_their_json_text(api: Api) -> None:
    value = {"a": [1, 2.5, None, True], "b": {"c": "d"}}
    await api.call("PUT", BASE, [{"key": "k", "value": value}])
    assert orjson.loads((await api.call("GET", f"{BASE}/k")).body) == value


async def test_get_of_missing_key_returns_204_without_body(api: Api) -> None:
    resp = await api.call("GET", f"{BASE}/missing")
    assert (resp.status, resp.body) == (204, b"")


async def test_percent_encoded_key_is_decoded(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "a b", "value": 1}])
    assert (await api.call("GET", f"{BASE}/a%20b")).body == b"1"


async def test_empty_save_array_returns_204(api: Api) -> None:
    assert (await api.call("POST", BASE, [])).status == 204


async def test_query_metadata_applies_to_every_item(api: Api) -> None:
    resp = await api.call(
        "POST", BASE, [{"key": "a", "value": 1}], query="metadata.ttlInSeconds=soon"
    )
    assert (resp.status, error_code(resp)) == (500, "ERR_STATE_SAVE")
    assert await api.stored("a") is None


async def test_save_with_stale_etag_returns_409(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    etag = (await api.service.get("store", "k")).etag
    await api.call("POST", BASE, [{"key": "k", "value": 2}])
    resp = await api.call("POST", BASE, [{"key": "k", "value": 3, "etag": etag}])
    assert (resp.status, error_code(resp)) == (409, "ERR_STATE_SAVE")
    assert await api.stored("k") == b"2"


async def test_save_with_current_etag_returns_204(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    etag = (await api.service.get("store", "k")).etag
    resp = await api.call(
        "POST",
        BASE,
        [{"key": "k", "value": 2, "etag": etag, "options": {"concurrency": "first-write"}}],
    )
    assert resp.status == 204 and await api.stored("k") == b"2"


async def test_save_with_invalid_etag_returns_400(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    resp = await api.call("POST", BASE, [{"key": "k", "value": 2, "etag": "not-a-version"}])
    assert (resp.status, error_code(resp)) == (400, "ERR_STATE_SAVE")
    assert await api.stored("k") == b"1"


async def test_first_write_without_etag_on_existing_key_returns_409(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    item = {"key": "k", "value": 2, "options": {"concurrency": "first-write"}}
    resp = await api.call("POST", BASE, [item])
    assert (resp.status, error_code(resp)) == (409, "ERR_STATE_SAVE")


# -- malformed requests -----------------------------------------------------------------

GOOD = {"key": "sentinel", "value": 1}


@pytest.mark.parametrize(
    "bad_item",
    [
        pytest.param({"value": 1}, id="key-missing"),
        pytest.param({"key": 7, "value": 1}, id="key-number"),
        pytest.param({"key": None, "value": 1}, id="key-null"),
        pytest.param({"key": "k"}, id="value-missing"),
        pytest.param({"key": "k", "value": 1, "etag": 3}, id="etag-number"),
        pytest.param({"key": "k", "value": 1, "metadata": {"a": 1}}, id="metadata-value-number"),
        pytest.param({"key": "k", "value": 1, "metadata": ["a"]}, id="metadata-array"),
        pytest.param({"key": "k", "value": 1, "options": "strong"}, id="options-string"),
        pytest.param(
            {"key": "k", "value": 1, "options": {"concurrency": "whoever"}}, id="bad-concurrency"
        ),
        pytest.param(
            {"key": "k", "value": 1, "options": {"consistency": "maybe"}}, id="bad-consistency"
        ),
        pytest.param("k", id="item-string"),
        pytest.param({"key": "", "value": 1}, id="key-empty"),
        pytest.param({"key": "a||b", "value": 1}, id="key-with-separator"),
    ],
)
async def test_malformed_save_item_returns_400_and_stores_nothing(api: Api, bad_item: Any) -> None:
    resp = await api.call("POST", BASE, [GOOD, bad_item])
    assert (resp.status, error_code(resp)) == (400, "ERR_MALFORMED_REQUEST")
    assert await api.stored("sentinel") is None


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b'{"key": "k", "value": 1}', b'"x"'], ids=repr
)
async def test_save_body_that_is_not_a_json_array_returns_400(api: Api, raw: bytes) -> None:
    resp = await api.call("POST", BASE, raw=raw)
    assert (resp.status, error_code(resp)) == (400, "ERR_MALFORMED_REQUEST")


async def test_separator_key_error_carries_rich_details(api: Api) -> None:
    resp = await api.call("POST", BASE, [{"key": "a||b", "value": 1}])
    details = orjson.loads(resp.body)["details"]
    assert details[0]["reason"] == "DAPR_STATE_ILLEGAL_KEY"
    assert details[1]["resource_name"] == "store"


async def test_unknown_store_returns_400_before_the_body_is_read(api: Api) -> None:
    resp = await api.call("POST", "/v1.0/state/nope", raw=b"{garbage")
    assert (resp.status, error_code(resp)) == (400, "ERR_STATE_STORE_NOT_FOUND")
    for method, path in [
        ("GET", "/v1.0/state/nope/k"),
        ("DELETE", "/v1.0/state/nope/k"),
        ("POST", "/v1.0/state/nope/bulk"),
        ("POST", "/v1.0/state/nope/transaction"),
    ]:
        resp = await api.call(method, path, {"keys": []})
        assert (resp.status, error_code(resp)) == (400, "ERR_STATE_STORE_NOT_FOUND"), path


async def test_no_configured_store_returns_500() -> None:
    resp = await api_for(StateService([])).call("GET", "/v1.0/state/any/k")
    assert (resp.status, error_code(resp)) == (500, "ERR_STATE_STORE_NOT_CONFIGURED")


async def test_get_with_unknown_consistency_returns_400(api: Api) -> None:
    resp = await api.call("GET", f"{BASE}/k", query="consistency=sometimes")
    assert (resp.status, error_code(resp)) == (400, "ERR_MALFORMED_REQUEST")


async def test_get_of_separator_key_returns_400(api: Api) -> None:
    resp = await api.call("GET", f"{BASE}/a||b")
    assert (resp.status, error_code(resp)) == (400, "ERR_MALFORMED_REQUEST")


# -- delete -----------------------------------------------------------------------------


async def test_delete_returns_204_and_removes_the_key(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    resp = await api.call("DELETE", f"{BASE}/k")
    assert (resp.status, resp.body) == (204, b"")
    assert await api.stored("k") is None


async def test_delete_with_stale_if_match_returns_409(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    etag = (await api.service.get("store", "k")).etag or ""
    await api.call("POST", BASE, [{"key": "k", "value": 2}])
    resp = await api.call("DELETE", f"{BASE}/k", headers={"if-match": etag})
    assert (resp.status, error_code(resp)) == (409, "ERR_STATE_DELETE")
    assert await api.stored("k") == b"2"


async def test_delete_with_invalid_if_match_returns_400(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    resp = await api.call("DELETE", f"{BASE}/k", headers={"if-match": "W/abc"})
    assert (resp.status, error_code(resp)) == (400, "ERR_STATE_DELETE")
    assert await api.stored("k") == b"1"


async def test_delete_with_current_if_match_and_empty_if_match_succeed(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "a", "value": 1}, {"key": "b", "value": 1}])
    etag = (await api.service.get("store", "a")).etag or ""
    assert (await api.call("DELETE", f"{BASE}/a", headers={"if-match": etag})).status == 204
    assert (await api.call("DELETE", f"{BASE}/b", headers={"if-match": ""})).status == 204
    assert await api.stored("a") is None and await api.stored("b") is None


async def test_delete_with_unknown_concurrency_returns_400(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "k", "value": 1}])
    resp = await api.call("DELETE", f"{BASE}/k", query="concurrency=never")
    assert (resp.status, error_code(resp)) == (400, "ERR_MALFORMED_REQUEST")
    assert await api.stored("k") == b"1"


# -- bulk get ---------------------------------------------------------------------------


async def test_bulk_get_returns_data_items_in_order(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "a", "value": {"x": 1}}, {"key": "b", "value": "s"}])
    resp = await api.call("POST", f"{BASE}/bulk", {"keys": ["b", "missing", "a"]})
    assert resp.status == 200
    items = orjson.loads(resp.body)
    etag_a = (await api.service.get("store", "a")).etag
    etag_b = (await api.service.get("store", "b")).etag
    assert items == [
        {"key": "b", "data": "s", "etag": etag_b},
        {"key": "missing"},
        {"key": "a", "data": {"x": 1}, "etag": etag_a},
    ]


async def test_bulk_get_renders_raw_non_json_values_as_strings(api: Api) -> None:
    await api.service.save("store", [SetRequest("raw", b"plain text"), SetRequest("bin", b"\xff")])
    resp = await api.call("PUT", f"{BASE}/bulk", {"keys": ["raw", "bin"], "parallelism": 2})
    items = orjson.loads(resp.body)
    assert [i["data"] for i in items] == ["plain text", "/w=="]


async def test_bulk_get_with_no_keys_returns_empty_array(api: Api) -> None:
    bodies: list[dict[str, object]] = [{"keys": []}, {}]
    for body in bodies:
        resp = await api.call("POST", f"{BASE}/bulk", body)
        assert (resp.status, resp.body) == (200, b"[]")


@pytest.mark.parametrize(
    "body",
    [
        {"keys": "a"},
        {"keys": ["a", 1]},
        {"keys": ["a"], "parallelism": "10"},
        {"keys": ["a"], "metadata": {"k": 1}},
        ["a"],
        {"keys": ["a||b"]},
        {"keys": [""]},
    ],
    ids=repr,
)
async def test_malformed_bulk_get_returns_400(api: Api, body: object) -> None:
    resp = await api.call("POST", f"{BASE}/bulk", body)
    assert (resp.status, error_code(resp)) == (400, "ERR_MALFORMED_REQUEST")


async def test_get_and_delete_of_keys_named_bulk_or_transaction_reach_the_key_handlers(
    api: Api,
) -> None:
    await api.call("POST", BASE, [{"key": "bulk", "value": 1}, {"key": "transaction", "value": 2}])
    assert (await api.call("GET", f"{BASE}/bulk")).body == b"1"
    assert (await api.call("GET", f"{BASE}/transaction")).body == b"2"
    assert (await api.call("DELETE", f"{BASE}/bulk")).status == 204
    assert (await api.call("DELETE", f"{BASE}/transaction")).status == 204
    assert await api.stored("bulk") is None and await api.stored("transaction") is None


# -- transactions -----------------------------------------------------------------------


async def test_transaction_applies_operations_and_returns_204(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "old", "value": 1}])
    ops = [
        {"operation": "upsert", "request": {"key": "new", "value": {"n": 1}}},
        {"operation": "delete", "request": {"key": "old"}},
    ]
    resp = await api.call("POST", f"{BASE}/transaction", {"operations": ops})
    assert (resp.status, resp.body) == (204, b"")
    assert await api.stored("new") == b'{"n":1}' and await api.stored("old") is None


async def test_transaction_with_unknown_operation_returns_400_and_writes_nothing(
    api: Api,
) -> None:
    ops = [
        {"operation": "upsert", "request": {"key": "a", "value": 1}},
        {"operation": "merge", "request": {"key": "b", "value": 1}},
    ]
    resp = await api.call("POST", f"{BASE}/transaction", {"operations": ops})
    assert (resp.status, error_code(resp)) == (400, "ERR_NOT_SUPPORTED_STATE_OPERATION")
    assert await api.stored("a") is None


async def test_transaction_with_stale_etag_returns_500_and_writes_nothing(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "b", "value": 1}])
    ops = [
        {"operation": "upsert", "request": {"key": "a", "value": 1}},
        {"operation": "delete", "request": {"key": "b", "etag": "999999"}},
    ]
    resp = await api.call("PUT", f"{BASE}/transaction", {"operations": ops})
    assert (resp.status, error_code(resp)) == (500, "ERR_STATE_TRANSACTION")
    assert await api.stored("a") is None and await api.stored("b") == b"1"


@pytest.mark.parametrize(
    "body",
    [
        {"operations": {"operation": "upsert"}},
        {"operations": ["upsert"]},
        {"operations": [{"operation": 1, "request": {"key": "a", "value": 1}}]},
        {"operations": [{"operation": "upsert"}]},
        {"operations": [{"operation": "upsert", "request": {"key": "a"}}]},
        {"operations": [{"operation": "delete", "request": {"key": 5}}]},
        {"operations": [], "metadata": {"partitionKey": 1}},
        [],
    ],
    ids=repr,
)
async def test_malformed_transaction_returns_400(api: Api, body: object) -> None:
    resp = await api.call("POST", f"{BASE}/transaction", body)
    assert (resp.status, error_code(resp)) == (400, "ERR_MALFORMED_REQUEST")


async def test_empty_transaction_returns_204(api: Api) -> None:
    resp = await api.call("POST", f"{BASE}/transaction", {"operations": []})
    assert resp.status == 204


# -- query (alpha) ----------------------------------------------------------------------

QUERY = "/v1.0-alpha1/state/store/query"


async def test_query_returns_results_with_embedded_json_data_etags_and_token(api: Api) -> None:
    await api.call(
        "POST",
        BASE,
        [
            {"key": k, "value": {"n": n, "team": "a" if n % 2 else "b"}}
            for k, n in [("x", 1), ("y", 2), ("z", 3), ("w", 5)]
        ],
    )
    await api.service.save("store", [SetRequest("raw", b"not json")])
    query = {
        "filter": {"EQ": {"team": "a"}},
        "sort": [{"key": "n", "order": "DESC"}],
        "page": {"limit": 2},
    }
    resp = await api.call("POST", QUERY, query, query="metadata.contentType=application/json")
    assert (resp.status, resp.content_type) == (200, b"application/json")
    body = orjson.loads(resp.body)
    etag_w = (await api.service.get("store", "w")).etag
    assert body["results"][0] == {"key": "w", "data": {"n": 5, "team": "a"}, "etag": etag_w}
    assert [r["key"] for r in body["results"]] == ["w", "z"]
    assert body["token"] == "2"
    query["page"]["token"] = body["token"]
    rest = orjson.loads((await api.call("PUT", QUERY, query)).body)
    assert [r["key"] for r in rest["results"]] == ["x"] and "token" not in rest
    everything = orjson.loads((await api.call("POST", QUERY, {})).body)
    assert {r["key"]: r["data"] for r in everything["results"]}["raw"] == "not json"


async def test_query_with_no_results_returns_204(api: Api) -> None:
    resp = await api.call("POST", QUERY, {"filter": {"EQ": {"a": 1}}})
    assert (resp.status, resp.body) == (204, b"")


@pytest.mark.parametrize(
    "raw",
    [b"", b"{oops", b"[]", b'{"filter": {"LIKE": {"a": 1}}}', b'{"page": {"token": "t"}}'],
    ids=repr,
)
async def test_malformed_query_returns_500_err_state_query_with_reason(
    api: Api, raw: bytes
) -> None:
    resp = await api.call("POST", QUERY, raw=raw)
    assert (resp.status, error_code(resp)) == (500, "ERR_STATE_QUERY")
    assert orjson.loads(resp.body)["details"][0]["reason"] == "DAPR_STATE_QUERY_FAILED"


async def test_query_of_unknown_store_returns_400(api: Api) -> None:
    resp = await api.call("POST", "/v1.0-alpha1/state/nope/query", raw=b"{oops")
    assert (resp.status, error_code(resp)) == (400, "ERR_STATE_STORE_NOT_FOUND")


async def test_query_on_redis_returns_500_not_supported(request: pytest.FixtureRequest) -> None:
    redis: RedisServer = request.getfixturevalue("redis_server")
    spec = ComponentSpec("cache", "state.redis", metadata={"redisHost": redis.address})
    service = StateService.from_specs([spec], ComponentContext(app_id="app"))
    try:
        resp = await api_for(service).call("POST", "/v1.0-alpha1/state/cache/query", {})
    finally:
        await service.close()
    assert (resp.status, error_code(resp)) == (500, "ERR_STATE_STORE_NOT_SUPPORTED")
    body = orjson.loads(resp.body)
    assert body["message"] == "state store does not support querying"
    assert body["details"][0]["reason"] == "DAPR_STATE_QUERYING_NOT_SUPPORTED"


async def test_get_and_delete_still_reach_keys_named_query(api: Api) -> None:
    await api.call("POST", BASE, [{"key": "query", "value": 1}])
    assert (await api.call("GET", f"{BASE}/query")).body == b"1"
    assert (await api.call("DELETE", f"{BASE}/query")).status == 204
