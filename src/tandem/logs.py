"""Logging shared by Tandem processes: one line per record on stderr, in Dapr's two shapes.

Text (the default, as daprd's): ``time="…" level=info msg="…" app_id=orders scope=…``
(logfmt); JSON (``--log-as-json``): one object per line. Either way each line names the app
and, inside a request, the trace id (from the request's trace context, which the doors make
current: ``tandem.observability.tracing.incoming``). :func:`parse_line` reads both back.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson
from opentelemetry import trace

# LogRecord attributes that are plumbing, not fields worth printing.
_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_LOGFMT = re.compile(r'(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def _entry(record: logging.LogRecord, component: str, app_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "msg": record.getMessage(),
        "component": component,
        "scope": record.name,
    }
    if app_id:
        entry["app_id"] = app_id
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        entry["trace_id"] = f"{ctx.trace_id:032x}"
    for key, value in record.__dict__.items():
        if key not in _STD_ATTRS and not key.startswith("_"):
            entry[key] = value
    return entry


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str, app_id: str = "") -> None:
        super().__init__()
        self._component = component
        self._app_id = app_id

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record, self._component, self._app_id)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if text and not re.search(r'[\s"=]', text):
        return text
    return orjson.dumps(text).decode()  # a quoted, escaped string


class TextFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record, self._component, self._app_id)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in entry.items())


def setup_logging(level: str, component: str, *, app_id: str = "", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter if as_json else TextFormatter
    handler.setFormatter(formatter(component, app_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """A log line of either shape as a dict (values of the text shape stay strings)."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if text.startswith("{"):
        try:
            entry = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        return entry if isinstance(entry, dict) else None
    fields = _LOGFMT.findall(text)
    if not fields or fields[0][0] != "time":
        return None
    out: dict[str, Any] = {}
    for key, raw in fields:
        out[key] = orjson.loads(raw) if raw.startswith('"') else raw
    return out
