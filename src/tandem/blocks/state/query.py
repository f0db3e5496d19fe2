"""The state query language (Dapr's alpha query API), independent of transport and store.

A query is JSON: ``{"filter": {...}, "sort": [...], "page": {"limit": n, "token": "t"}}``.
:func:`parse_query` turns it into the small immutable model below or raises
:class:`QueryError`. Stores then either compile the model (SQLite and PostgreSQL, to SQL over
their JSON functions) or evaluate it in Python (:func:`matches`, :func:`sort_key`).

Semantics every store keeps (the conformance suite checks them):
- Values are JSON documents; a field is a dotted path into objects (``person.org``).
- A stored value that is not JSON never matches a filter, but an unfiltered query returns it.
- Comparisons are typed: ``{"EQ": {"n": 1}}`` matches the number 1, not the string "1" nor
  ``true``. GT/GTE/LT/LTE compare numbers with numbers and strings with strings (by code
  point); any other pairing does not match. NEQ needs the field to be present.
- Sorting orders numbers, then strings, then booleans; a missing, null or non-scalar field
  sorts last in either direction. The stored key breaks ties, so paging is stable.
- A page token is the offset of the next page, returned only when a page came back full.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

Scalar = str | int | float | bool | None


class QueryError(ValueError):
    """The query is not valid; the service reports it as Dapr's ``ERR_STATE_QUERY``."""


class Op(StrEnum):
    EQ = "EQ"
    NEQ = "NEQ"
    GT = "GT"
    GTE = "GTE"
    LT = "LT"
    LTE = "LTE"


@dataclass(frozen=True, slots=True)
class Compare:
    op: Op
    path: tuple[str, ...]
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    path: tuple[str, ...]
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class And:
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    filters: tuple[Filter, ...]


Filter = Compare | In | And | Or


@dataclass(frozen=True, slots=True)
class Sort:
    path: tuple[str, ...]
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    filter: Filter | None = None
    sort: tuple[Sort, ...] = ()
    limit: int = 0  # 0: no limit
    offset: int = 0  # decoded from the page token


@dataclass(frozen=True, slots=True)
class QueryItem:
    """One result: the stored key (the service strips the prefix), value bytes and etag."""

    key: str
    data: bytes
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    items: tuple[QueryItem, ...]
    token: str = ""
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """What a store is asked: the query, over the stored keys starting with ``key_prefix``
    (``None``: every key in the table)."""

    query: Query
    key_prefix: str | None
    metadata: Mapping[str, str]


# -- parsing ------------------------------------------------------------------------------

_COMPARE_OPS = {op.value: op for op in Op}
_MAX_DEPTH = 32


def parse_query(raw: str | bytes) -> Query:
    """The query text an app sent, validated into a :class:`Query`."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise QueryError(f"failed to parse JSON query body: {exc}") from None
    if not isinstance(doc, dict):
        raise QueryError("failed to parse JSON query body: the query must be a JSON object")
    unknown = set(doc) - {"filter", "sort", "page"}
    if unknown:
        raise QueryError(f"unknown query field(s): {', '.join(sorted(unknown))}")
    flt = None
    if doc.get("filter") not in (None, {}):
        flt = _filter(doc["filter"], 0)
    sort = _sort(doc.get("sort"))
    limit, offset = _page(doc.get("page"))
    return Query(flt, sort, limit, offset)


def _path(key: object) -> tuple[str, ...]:
    if not isinstance(key, str) or not key:
        raise QueryError("a filter or sort key must be a non-empty string")
    parts = tuple(key.split("."))
    if any(p == "" or '"' in p or "\\" in p for p in parts):
        raise QueryError(f"invalid key path {key!r}")
    return parts


def _scalar(value: object, where: str) -> Scalar:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise QueryError(f"{where}: the value must be a string, number, boolean or null")


def _single(body: object, op: str) -> tuple[str, object]:
    if not isinstance(body, dict) or len(body) != 1:
        raise QueryError(f"{op} filter must be an object with exactly one key")
    ((key, value),) = body.items()
    return key, value


def _filter(node: object, depth: int) -> Filter:
    if depth > _MAX_DEPTH:
        raise QueryError("filter is nested too deeply")
    if not isinstance(node, dict) or len(node) != 1:
        raise QueryError("a filter must be an object with exactly one operator")
    ((op, body),) = node.items()
    if op in ("AND", "OR"):
        if not isinstance(body, list) or len(body) < 2:
            raise QueryError(f"{op} filter must be an array of at least two filters")
        children = tuple(_filter(child, depth + 1) for child in body)
        return And(children) if op == "AND" else Or(children)
    if op == "IN":
        key, values = _single(body, op)
        if not isinstance(values, list) or not values:
            raise QueryError("IN filter must map its key to a non-empty array")
        return In(_path(key), tuple(_scalar(v, "IN") for v in values))
    compare = _COMPARE_OPS.get(op) if isinstance(op, str) else None
    if compare is None:
        raise QueryError(f"unsupported filter operator {op!r}")
    key, value = _single(body, op)
    scalar = _scalar(value, op)
    if compare in (Op.GT, Op.GTE, Op.LT, Op.LTE) and (scalar is None or isinstance(scalar, bool)):
        raise QueryError(f"{op} filter needs a number or a string")
    return Compare(compare, _path(key), scalar)


def _sort(raw: object) -> tuple[Sort, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise QueryError("sort must be an array")
    out = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) - {"key", "order"}:
            raise QueryError('a sort entry must be {"key": ..., "order": "ASC"|"DESC"}')
        order = entry.get("order", "ASC")
        if order not in ("ASC", "DESC"):
            raise QueryError(f"sort order must be ASC or DESC, not {order!r}")
        out.append(Sort(_path(entry.get("key")), order == "DESC"))
    return tuple(out)


def _page(raw: object) -> tuple[int, int]:
    if raw is None:
        return 0, 0
    if not isinstance(raw, dict) or set(raw) - {"limit", "token"}:
        raise QueryError('page must be {"limit": n, "token": "..."}')
    limit = raw.get("limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise QueryError("page limit must be a non-negative integer")
    token = raw.get("token") or ""
    if not isinstance(token, str) or (token and not token.isdigit()) or len(token) > 18:
        raise QueryError(f"invalid page token {token!r}")
    return limit, int(token) if token else 0


def next_token(query: Query, returned: int) -> str:
    """The token of the page after one that returned ``returned`` items, or ``""``."""
    if query.limit and returned == query.limit:
        return str(query.offset + returned)
    return ""


# -- values -------------------------------------------------------------------------------


MAX_NESTING = 100


def json_document(data: bytes) -> bool:
    """Whether stored bytes are a JSON document every store can index (the "is JSON" flag).

    Refused, so stored as plain bytes: a NUL escape (PostgreSQL's jsonb can't hold one) and
    nesting deeper than MAX_NESTING (the SQL engines' JSON parsers have depth limits, and a
    document one of them rejects would fail every query over the table)."""
    if b"\\u0000" in data:
        return False
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    # Counting brackets is C-speed; only a document with many containers is walked.
    if data.count(b"[") + data.count(b"{") > MAX_NESTING:
        return _depth_within(doc, MAX_NESTING)
    return True


def _depth_within(doc: Any, limit: int) -> bool:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


_MISSING = object()


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(doc, dict):
            return _MISSING
        doc = doc.get(part, _MISSING)
        if doc is _MISSING:
            return _MISSING
    return doc


def _kind(value: Any) -> str:
    """The JSON type of a Python value: number, string, boolean, null or other."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "other"


def _equal(found: Any, want: Scalar) -> bool:
    return _kind(found) == _kind(want) and found == want


def matches(flt: Filter, doc: Any) -> bool:
    """Evaluate a filter against a decoded JSON document (the in-memory store's engine)."""
    if isinstance(flt, And):
        return all(matches(f, doc) for f in flt.filters)
    if isinstance(flt, Or):
        return any(matches(f, doc) for f in flt.filters)
    found = _lookup(doc, flt.path)
    if found is _MISSING:
        return False
    if isinstance(flt, In):
        return any(_equal(found, v) for v in flt.values)
    if flt.op is Op.EQ:
        return _equal(found, flt.value)
    if flt.op is Op.NEQ:
        return not _equal(found, flt.value)
    if _kind(found) != _kind(flt.value):
        return False
    want: Any = flt.value
    match flt.op:
        case Op.GT:
            return bool(found > want)
        case Op.GTE:
            return bool(found >= want)
        case Op.LT:
            return bool(found < want)
        case _:
            return bool(found <= want)


_RANK = {"number": 0, "string": 1, "boolean": 2}


class _Reversed:
    """Inverts the order of a comparable value (for DESC keys in a Python sort)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]


def sort_key(sort: tuple[Sort, ...], key: str, doc: Any) -> tuple[Any, ...]:
    """A Python sort key giving the order the SQL stores produce (see the module notes)."""
    parts: list[Any] = []
    for s in sort:
        found = _lookup(doc, s.path) if doc is not _MISSING else _MISSING
        rank = 3 if found is _MISSING else _RANK.get(_kind(found), 3)
        if rank == 3:
            parts += [1, 0, 0]  # missing, null or not a scalar: last, in either direction
        elif s.descending:
            parts += [0, _Reversed(rank), _Reversed(found)]
        else:
            parts += [0, rank, found]
    parts.append(key)
    return tuple(parts)


NOT_JSON: Any = _MISSING
"""The document of a stored value that is not JSON: matches no filter, sorts last."""
