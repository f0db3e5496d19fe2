"""The query model of :mod:`.query` compiled to SQL, for SQLite and for PostgreSQL.

Both dialects compile the same model to the same semantics (see :mod:`.query`); a value
that is not JSON has a NULL document, so it never matches a comparison and sorts last.
Every user-supplied value and path travels as a bound parameter, never as SQL text.

- SQLite: ``doc`` is the value as JSON text (``NULL`` if not JSON); paths are JSON paths
  (``$."person"."org"``); ``json_type`` keeps ``1``, ``"1"`` and ``true`` apart.
- PostgreSQL: ``doc`` is a ``jsonb`` column; paths are ``text[]`` for ``#>``; strings
  compare under ``COLLATE "C"`` (code-point order) whatever the database's collation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tandem.blocks.state.query import And, Filter, In, Op, Or, Query, Scalar

_SQL_OP = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_INT64 = 2**63


@dataclass(slots=True)
class _Params:
    """Collects bound parameters; ``style`` is ``?`` (SQLite) or ``$n`` (PostgreSQL)."""

    numbered: bool
    values: list[Any] = field(default_factory=list)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}" if self.numbered else "?"


# -- SQLite -------------------------------------------------------------------------------


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{p}"' for p in path)


def _sqlite_number(value: int | float) -> int | float:
    # SQLite integers are int64; JSON integers beyond that are read back as REAL.
    return float(value) if isinstance(value, int) and abs(value) >= _INT64 else value


def _sqlite_eq(p: _Params, doc: str, path: str, value: Scalar) -> str:
    kind = f"json_type({doc}, {p.add(path)})"
    if value is None:
        return f"{kind} = 'null'"
    if isinstance(value, bool):
        return f"{kind} = '{'true' if value else 'false'}'"
    if isinstance(value, str):
        return f"({kind} = 'text' AND json_extract({doc}, {p.add(path)}) = {p.add(value)})"
    number = _sqlite_number(value)
    return (
        f"({kind} IN ('integer', 'real') AND json_extract({doc}, {p.add(path)}) = {p.add(number)})"
    )


def _sqlite_filter(p: _Params, doc: str, flt: Filter) -> str:
    if isinstance(flt, And | Or):
        joiner = " AND " if isinstance(flt, And) else " OR "
        return "(" + joiner.join(_sqlite_filter(p, doc, f) for f in flt.filters) + ")"
    path = _sqlite_path(flt.path)
    if isinstance(flt, In):
        return "(" + " OR ".join(_sqlite_eq(p, doc, path, v) for v in flt.values) + ")"
    if flt.op is Op.EQ:
        return _sqlite_eq(p, doc, path, flt.value)
    if flt.op is Op.NEQ:
        present = f"json_type({doc}, {p.add(path)}) IS NOT NULL"
        return f"({present} AND NOT {_sqlite_eq(p, doc, path, flt.value)})"
    value = flt.value
    if isinstance(value, str):
        kinds = "('text')"
    else:
        assert isinstance(value, int | float) and not isinstance(value, bool)
        kinds = "('integer', 'real')"
        value = _sqlite_number(value)
    return (
        f"(json_type({doc}, {p.add(path)}) IN {kinds} AND "
        f"json_extract({doc}, {p.add(path)}) {_SQL_OP[flt.op]} {p.add(value)})"
    )


def _sqlite_order(p: _Params, doc: str, query: Query) -> str:
    terms = []
    for s in query.sort:
        path = _sqlite_path(s.path)

        def rank(path: str = path) -> str:
            return (
                f"(CASE json_type({doc}, {p.add(path)}) WHEN 'integer' THEN 0 "
                "WHEN 'real' THEN 0 WHEN 'text' THEN 1 WHEN 'true' THEN 2 "
                "WHEN 'false' THEN 2 ELSE 3 END)"
            )

        d = "DESC" if s.descending else "ASC"
        # Built left to right, so the positional parameters line up with the text.
        terms.append(f"({rank()} = 3)")
        terms.append(f"{rank()} {d}")
        terms.append(
            f"(CASE WHEN json_type({doc}, {p.add(path)}) IN "
            "('integer', 'real', 'text', 'true', 'false') "
            f"THEN json_extract({doc}, {p.add(path)}) END) {d}"
        )
    terms.append("key ASC")
    return ", ".join(terms)


def sqlite_select(
    table: str, query: Query, key_prefix: str | None, now: float
) -> tuple[str, list[Any]]:
    """A SELECT of ``key, value, version`` for ``query`` over a table of the sqlite store."""
    p = _Params(numbered=False)
    doc = "doc"
    where = ["(expires_at IS NULL OR expires_at > " + p.add(now) + ")"]
    if key_prefix is not None:
        # A range on the primary key: every key that starts with the prefix ('|' + 1 = '}').
        assert key_prefix.endswith("||")
        where.append(f"key >= {p.add(key_prefix)} AND key < {p.add(key_prefix[:-1] + '}')}")
    inner = (
        "SELECT key, value, version, "
        "CASE WHEN is_json THEN CAST(value AS TEXT) END AS doc "
        f'FROM "{table}" WHERE ' + " AND ".join(where)
    )
    sql = f"SELECT key, value, version FROM ({inner})"
    if query.filter is not None:
        sql += " WHERE " + _sqlite_filter(p, doc, query.filter)
    sql += " ORDER BY " + _sqlite_order(p, doc, query)
    sql += f" LIMIT {p.add(query.limit or -1)} OFFSET {p.add(query.offset)}"
    return sql, p.values


# -- PostgreSQL ---------------------------------------------------------------------------


def _pg_value(p: _Params, value: Scalar) -> str:
    return p.add(orjson.dumps(value).decode()) + "::jsonb"


def _pg_eq(p: _Params, at: str, value: Scalar) -> str:
    # jsonb equality is typed: 1 = 1.0, but 1 <> "1" <> true.
    return f"({at} = {_pg_value(p, value)})"


def _pg_filter(p: _Params, doc: str, flt: Filter) -> str:
    if isinstance(flt, And | Or):
        joiner = " AND " if isinstance(flt, And) else " OR "
        return "(" + joiner.join(_pg_filter(p, doc, f) for f in flt.filters) + ")"
    path = p.add(list(flt.path)) + "::text[]"
    at = f"({doc} #> {path})"
    if isinstance(flt, In):
        return "(" + " OR ".join(_pg_eq(p, at, v) for v in flt.values) + ")"
    if flt.op is Op.EQ:
        return _pg_eq(p, at, flt.value)
    if flt.op is Op.NEQ:
        return f"({at} IS NOT NULL AND {at} <> {_pg_value(p, flt.value)})"
    op = _SQL_OP[flt.op]
    if isinstance(flt.value, str):
        return (
            f"(jsonb_typeof({at}) = 'string' AND "
            f'({doc} #>> {path}) COLLATE "C" {op} {p.add(flt.value)}::text COLLATE "C")'
        )
    return f"(jsonb_typeof({at}) = 'number' AND {at} {op} {_pg_value(p, flt.value)})"


def _pg_order(p: _Params, doc: str, query: Query) -> str:
    terms = []
    for s in query.sort:
        path = p.add(list(s.path)) + "::text[]"
        kind = f"jsonb_typeof({doc} #> {path})"
        rank = (
            f"(CASE {kind} WHEN 'number' THEN 0 WHEN 'string' THEN 1 "
            "WHEN 'boolean' THEN 2 ELSE 3 END)"
        )
        d = "DESC" if s.descending else "ASC"
        terms += [
            f"({rank} = 3)",
            f"{rank} {d}",
            f"(CASE WHEN {kind} = 'number' THEN ({doc} #>> {path})::numeric END) {d}",
            f"(CASE WHEN {kind} = 'string' THEN ({doc} #>> {path}) END) COLLATE \"C\" {d}",
            f"(CASE WHEN {kind} = 'boolean' THEN ({doc} #>> {path})::boolean END) {d}",
        ]
    terms.append('key COLLATE "C" ASC')
    return ", ".join(terms)


def postgres_select(table: str, query: Query, key_prefix: str | None) -> tuple[str, list[Any]]:
    """A SELECT of ``key, value, version`` for ``query`` over a postgresql store table
    (``table`` already quoted)."""
    p = _Params(numbered=True)
    doc = "value_json"
    where = ["(expires_at IS NULL OR expires_at > now())"]
    if key_prefix is not None:
        where.append(f"starts_with(key, {p.add(key_prefix)})")
    if query.filter is not None:
        where.append(_pg_filter(p, doc, query.filter))
    sql = f"SELECT key, value, version FROM {table} WHERE " + " AND ".join(where)
    sql += " ORDER BY " + _pg_order(p, doc, query)
    limit = p.add(query.limit if query.limit else None)
    sql += f" LIMIT {limit}::bigint OFFSET {p.add(query.offset)}::bigint"
    return sql, p.values
