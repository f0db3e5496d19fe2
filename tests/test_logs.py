"""Log lines in Dapr's two shapes, each with the app id and, inside a request, the trace id."""

from __future__ import annotations

import logging

import pytest

from tandem.logs import JsonFormatter, TextFormatter, parse_line
from tandem.observability.tracing import incoming

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "tandem.test", "levelname": "WARNING", "msg": msg})
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
def test_lines_carry_app_id_and_the_trace_id_inside_a_request(formatter):
    fmt = formatter("runtime", "orders")
    outside = parse_line(fmt.format(_record("starting")))
    assert outside is not None
    assert outside["app_id"] == "orders" and "trace_id" not in outside
    with incoming({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}):
        inside = parse_line(fmt.format(_record('a "quoted" = msg', store="s 1")))
    assert inside is not None
    assert inside["trace_id"] == TRACE_ID
    assert inside["msg"] == 'a "quoted" = msg'
    assert inside["store"] == "s 1"
    assert inside["level"] == "warning"


def test_text_shape_is_logfmt_like_daprd():
    line = TextFormatter("runtime", "orders").format(_record("hello"))
    assert line.startswith('time="') or line.startswith("time=")
    assert " level=warning msg=hello " in line and " app_id=orders" in line
