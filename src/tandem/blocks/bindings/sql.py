"""What the SQL bindings (``bindings.postgresql``, ``bindings.sqlite``) share: the
request's ``sql`` and ``params`` metadata and Dapr's response shape (rows as a JSON array
of arrays; ``operation``, ``sql``, times and ``rows-affected`` as response metadata)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from tandem.blocks.bindings.binding import BindingError, InvokeRequest, InvokeResponse

OPERATIONS = frozenset({"exec", "query", "close"})


def statement(request: InvokeRequest) -> tuple[str, list[Any]]:
    sql = request.metadata.get("sql", "")
    if not sql.strip():
        raise BindingError("metadata sql is required")
    raw = request.metadata.get("params", "")
    if not raw.strip():
        return sql, []
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BindingError(f"metadata params is not JSON: {exc}") from None
    if not isinstance(params, list):
        raise BindingError("metadata params must be a JSON array")
    return sql, params


class Timer:
    """Start and end of one statement, as Dapr reports them."""

    def __init__(self) -> None:
        self.start = datetime.now(UTC)
        self._t0 = time.perf_counter()

    def metadata(self, operation: str, sql: str) -> dict[str, str]:
        end = datetime.now(UTC)
        return {
            "operation": operation,
            "sql": sql,
            "start-time": self.start.isoformat(),
            "end-time": end.isoformat(),
            "duration": f"{time.perf_counter() - self._t0:.6f}s",
        }


def exec_response(timer: Timer, sql: str, rows_affected: int) -> InvokeResponse:
    md = timer.metadata("exec", sql)
    md["rows-affected"] = str(rows_affected)
    return InvokeResponse(None, md)


def query_response(timer: Timer, sql: str, rows: Sequence[Sequence[Any]]) -> InvokeResponse:
    body = orjson.dumps([list(r) for r in rows], default=_json_default)
    return InvokeResponse(body, timer.metadata("query", sql))


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(errors="replace")
    return str(value)  # Decimal, UUID, intervals...
