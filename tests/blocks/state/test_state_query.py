"""The query API, held to one semantics on every store that declares QUERY_API (sqlite,
postgresql v1, in-memory), each over its real backend; and Dapr's refusal on the others."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from state_helpers import QUERY_KINDS, STORE, MakeService, eventually

from servers import PostgresServer, RedisServer
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.query import QueryResult
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import SetRequest

PEOPLE: dict[str, dict[str, Any]] = {
    "1": {"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA"},
    "2": {"person": {"org": "Hardware", "id": 1028}, "city": "Portland", "state": "OR"},
    "3": {"person": {"org": "Finance", "id": 1071}, "city": "Sacramento", "state": "CA"},
    "4": {"person": {"org": "Dev Ops", "id": 1042}, "city": "Spokane", "state": "WA"},
    "5": {"person": {"org": "Hardware", "id": 1007}, "city": "Los Angeles", "state": "CA"},
    "6": {"person": {"org": "Finance", "id": 1094}, "city": "Eugene", "state": "OR"},
    "7": {"person": {"org": "Dev Ops", "id": 1015}, "city": "San Francisco", "state": "CA"},
    "8": {"person": {"org": "Hardware", "id": 1077}, "city": "Redmond", "state": "WA"},
    "9": {"person": {"org": "Finance", "id": 1002}, "city": "San Diego", "state": "CA"},
    "10": {"person": {"org": "Dev Ops", "id": 1054}, "city": "New York", "state": "NY"},
}


@pytest.fixture(params=QUERY_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Overrides conftest's: only the stores that answer queries."""
    return str(request.param)


@pytest.fixture
async def people(svc: StateService) -> StateService:
    await svc.save(STORE, [SetRequest(k, orjson.dumps(v)) for k, v in PEOPLE.items()])
    return svc


async def run(svc: StateService, query: dict[str, Any]) -> QueryResult:
    return await svc.query(STORE, orjson.dumps(query))


async def keys(svc: StateService, query: dict[str, Any]) -> list[str]:
    return [i.key for i in (await run(svc, query)).items]


def by(key: str, order: str = "ASC") -> dict[str, str]:
    return {"key": key, "order": order}


# -- filters ----------------------------------------------------------------------------


async def test_eq_filter_returns_matching_user_keys_with_data_and_etag(
    people: StateService,
) -> None:
    result = await run(people, {"filter": {"EQ": {"state": "CA"}}, "sort": [by("city")]})
    assert [i.key for i in result.items] == ["5", "3", "9", "7"]
    first = result.items[0]
    assert orjson.loads(first.data) == PEOPLE["5"]
    assert first.etag == (await people.get(STORE, "5")).etag
    assert result.token == ""


async def test_dapr_documented_query_with_or_and_in_and_two_sort_keys(
    people: StateService,
) -> None:
    query = {
        "filter": {
            "OR": [
                {"EQ": {"person.org": "Dev Ops"}},
                {"AND": [{"EQ": {"person.org": "Finance"}}, {"IN": {"state": ["CA", "WA"]}}]},
            ]
        },
        "sort": [by("state", "DESC"), by("person.id")],
    }
    assert await keys(people, query) == ["1", "4", "10", "9", "7", "3"]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"IN": {"state": ["OR", "NY"]}}, {"2", "6", "10"}),
        ({"NEQ": {"person.org": "Dev Ops"}}, {"2", "3", "5", "6", "8", "9"}),
        ({"GT": {"person.id": 1071}}, {"8", "6"}),
        ({"GTE": {"person.id": 1071}}, {"3", "8", "6"}),
        ({"LT": {"person.id": 1015}}, {"9", "5"}),
        ({"LTE": {"person.id": 1015}}, {"9", "5", "7"}),
        ({"GT": {"city": "Sacramento"}}, {"1", "4", "7", "9"}),
        ({"LT": {"city": "Eugene"}}, set()),
        ({"AND": [{"EQ": {"state": "WA"}}, {"GT": {"person.id": 1040}}]}, {"4", "8"}),
        ({"OR": [{"EQ": {"state": "NY"}}, {"EQ": {"city": "Eugene"}}]}, {"10", "6"}),
        ({"EQ": {"person.missing": "x"}}, set()),
        ({"EQ": {"state.deeper": "CA"}}, set()),
    ],
    ids=repr,
)
async def test_filter_operators(
    people: StateService, flt: dict[str, Any], expected: set[str]
) -> None:
    assert set(await keys(people, {"filter": flt})) == expected


async def test_comparisons_are_typed(svc: StateService) -> None:
    docs: dict[str, Any] = {
        "int": {"v": 1},
        "float": {"v": 1.0},
        "str": {"v": "1"},
        "true": {"v": True},
        "null": {"v": None},
        "obj": {"v": {"x": 1}},
        "missing": {"w": 1},
        "scalar": 1,
    }
    await svc.save(STORE, [SetRequest(k, orjson.dumps(v)) for k, v in docs.items()])

    async def match(flt: dict[str, Any]) -> set[str]:
        return set(await keys(svc, {"filter": flt}))

    assert await match({"EQ": {"v": 1}}) == {"int", "float"}
    assert await match({"EQ": {"v": "1"}}) == {"str"}
    assert await match({"EQ": {"v": True}}) == {"true"}
    assert await match({"EQ": {"v": None}}) == {"null"}
    assert await match({"IN": {"v": ["1", False, None]}}) == {"str", "null"}
    assert await match({"NEQ": {"v": 1}}) == {"str", "true", "null", "obj"}
    assert await match({"GTE": {"v": 1}}) == {"int", "float"}
    assert await match({"GT": {"v": "0"}}) == {"str"}


async def test_values_that_are_not_json_never_match_but_unfiltered_queries_return_them(
    svc: StateService,
) -> None:
    await svc.save(
        STORE,
        [
            SetRequest("json", b'{"v": "x"}'),
            SetRequest("text", b"v=x"),
            SetRequest("binary", b"\xff\x00{"),
            SetRequest("nul", b'{"v": "\\u0000"}'),
            SetRequest("deep", b'{"v": "x", "d": ' + b"[" * 150 + b"]" * 150 + b"}"),
        ],
    )
    for flt in ({"EQ": {"v": "x"}}, {"NEQ": {"v": "y"}}, {"GT": {"v": ""}}):
        assert await keys(svc, {"filter": flt}) == ["json"]
    everything = await run(svc, {})
    assert {i.key: i.data for i in everything.items} == {
        "json": b'{"v": "x"}',
        "text": b"v=x",
        "binary": b"\xff\x00{",
        "nul": b'{"v": "\\u0000"}',
        "deep": b'{"v": "x", "d": ' + b"[" * 150 + b"]" * 150 + b"}",
    }


# -- sort and page ----------------------------------------------------------------------


async def test_sort_orders_numbers_then_strings_then_booleans_and_missing_last(
    svc: StateService,
) -> None:
    docs: dict[str, Any] = {
        "a": {"v": "b"},
        "b": {"v": 2},
        "c": {"v": True},
        "d": {"v": None},
        "e": {"v": "a"},
        "f": {"v": 10},
        "g": {"w": 0},
        "h": {"v": False},
        "i": {"v": [1]},
        "j": {"v": 2.5},
        "k": {"v": "B"},
    }
    await svc.save(STORE, [SetRequest(k, orjson.dumps(v)) for k, v in docs.items()])
    await svc.save(STORE, [SetRequest("z", b"not json")])
    assert await keys(svc, {"sort": [by("v")]}) == list("bjfkeahcdgiz")
    assert await keys(svc, {"sort": [by("v", "DESC")]}) == list("chaekfjbdgiz")


async def test_paging_with_limit_and_token_walks_every_result_once(people: StateService) -> None:
    query: dict[str, Any] = {"sort": [by("person.id")], "page": {"limit": 3}}
    seen: list[str] = []
    tokens: list[str] = []
    while True:
        result = await run(people, query)
        seen += [i.key for i in result.items]
        if not result.token:
            break
        tokens.append(result.token)
        query["page"]["token"] = result.token
    assert seen == await keys(people, {"sort": [by("person.id")]})
    assert tokens == ["3", "6", "9"]
    assert len(seen) == 10


async def test_a_page_that_ends_exactly_at_the_last_result_is_followed_by_an_empty_one(
    people: StateService,
) -> None:
    first = await run(people, {"page": {"limit": 10}})
    assert len(first.items) == 10 and first.token == "10"
    last = await run(people, {"page": {"limit": 10, "token": first.token}})
    assert last.items == () and last.token == ""


async def test_unsorted_results_are_in_key_order(people: StateService) -> None:
    assert await keys(people, {}) == sorted(PEOPLE)


# -- scope ------------------------------------------------------------------------------


async def test_query_sees_only_this_apps_keys(make_service: MakeService) -> None:
    mine, other = await make_service(), await make_service(app_id="o-" + uuid.uuid4().hex)
    await mine.save(STORE, [SetRequest("k", b'{"v": 1}')])
    await other.save(STORE, [SetRequest("k", b'{"v": 1}'), SetRequest("j", b'{"v": 1}')])
    assert await keys(mine, {"filter": {"EQ": {"v": 1}}}) == ["k"]
    assert await keys(other, {}) == ["j", "k"]


async def test_expired_values_are_not_returned(svc: StateService) -> None:
    await svc.save(
        STORE,
        [
            SetRequest("short", b'{"v": 1}', metadata={"ttlInSeconds": "1"}),
            SetRequest("long", b'{"v": 1}', metadata={"ttlInSeconds": "3600"}),
        ],
    )
    assert await keys(svc, {"filter": {"EQ": {"v": 1}}}) == ["long", "short"]

    async def gone() -> bool:
        return await keys(svc, {}) == ["long"]

    await eventually(gone)


async def test_a_query_matching_nothing_returns_no_items(people: StateService) -> None:
    result = await run(people, {"filter": {"EQ": {"state": "TX"}}})
    assert result.items == () and result.token == ""


# -- malformed queries ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'"filter"',
        b'{"filter": {"LIKE": {"a": "b"}}}',
        b'{"filter": {"EQ": {"a": 1, "b": 2}}}',
        b'{"filter": {"EQ": "a"}}',
        b'{"filter": {"EQ": {"a": [1]}}}',
        b'{"filter": {"EQ": {"a": {"b": 1}}}}',
        b'{"filter": {"EQ": {"": 1}}}',
        b'{"filter": {"EQ": {"a..b": 1}}}',
        b'{"filter": {"EQ": {"a\\"b": 1}}}',
        b'{"filter": {"IN": {"a": []}}}',
        b'{"filter": {"IN": {"a": "x"}}}',
        b'{"filter": {"AND": [{"EQ": {"a": 1}}]}}',
        b'{"filter": {"OR": {"EQ": {"a": 1}}}}',
        b'{"filter": {"GT": {"a": true}}}',
        b'{"filter": {"GT": {"a": null}}}',
        b'{"filter": {"EQ": {"a": 1}, "IN": {"a": [1]}}}',
        b'{"sort": {"key": "a"}}',
        b'{"sort": [{"key": "a", "order": "UP"}]}',
        b'{"sort": [{"order": "ASC"}]}',
        b'{"page": {"limit": -1}}',
        b'{"page": {"limit": "3"}}',
        b'{"page": {"limit": 3, "token": "x"}}',
        b'{"page": {"limit": 3, "token": 3}}',
        b'{"select": ["a"]}',
    ],
    ids=repr,
)
async def test_malformed_query_is_err_state_query_500(svc: StateService, raw: bytes) -> None:
    with pytest.raises(DaprError) as info:
        await svc.query(STORE, raw)
    err = info.value
    assert (err.error_code, err.http_status) == ("ERR_STATE_QUERY", 500), err
    assert err.info is not None and err.info.reason == "DAPR_STATE_QUERY_FAILED"


# -- stores without the query API -------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "postgresql-v2"])
async def test_store_without_query_api_answers_not_supported_before_reading_the_query(
    request: pytest.FixtureRequest, kind: str
) -> None:
    if kind == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        spec = ComponentSpec(STORE, "state.redis", metadata={"redisHost": redis.address})
    else:
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        md = {"connectionString": pg.url, "tableName": "state_v2"}
        spec = ComponentSpec(STORE, "state.postgresql", "v2", metadata=md)
    svc = StateService.from_specs([spec], ComponentContext(app_id="app"))
    try:
        with pytest.raises(DaprError) as info:
            await svc.query(STORE, b"{not json")
    finally:
        await svc.close()
    err = info.value
    assert (err.error_code, err.http_status) == ("ERR_STATE_STORE_NOT_SUPPORTED", 500)
    assert err.info is not None and err.info.reason == "DAPR_STATE_QUERYING_NOT_SUPPORTED"
