"""The runtime's tracer: a collector that is down costs dropped (counted) spans, no waiting."""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind

from tandem.cli.ports import free_port
from tandem.observability.export import TraceExport
from tandem.observability.tracing import MAX_QUEUE, NO_TRACING, Tracing, incoming


def _dead(exporter: str) -> TraceExport:
    return TraceExport(
        sampling_rate=1.0, exporter=exporter, host="127.0.0.1", port=free_port(), path=""
    )  # type: ignore[arg-type]


def test_spans_to_a_dead_collector_are_dropped_and_counted():
    tracing = Tracing(_dead("otlp_grpc"), "a")
    try:
        for _ in range(MAX_QUEUE * 2):
            with tracing.span("SET s", SpanKind.CLIENT, {"db.system": "redis"}):
                pass
        deadline = time.monotonic() + 30
        while tracing.dropped_spans < MAX_QUEUE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tracing.dropped_spans >= MAX_QUEUE
    finally:
        tracing.shutdown()


def test_a_caller_traceparent_becomes_the_parent():
    tracing = Tracing(_dead("otlp_http"), "a")
    try:
        trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        with (
            incoming({"traceparent": f"00-{trace_id}-{span_id}-01"}),
            tracing.span("GET s", SpanKind.CLIENT, {}) as span,
        ):
            ctx = span.get_span_context()
            assert f"{ctx.trace_id:032x}" == trace_id
            assert f"{span.parent.span_id:016x}" == span_id  # type: ignore[attr-defined]
    finally:
        tracing.shutdown()


def test_no_tracing_makes_no_spans():
    with NO_TRACING.span("x", SpanKind.CLIENT, {}) as span:
        assert not span.get_span_context().is_valid
