"""The runtime's OTLP messages: wire-compatible with OTLP, independent of the files on disk."""

from __future__ import annotations

import subprocess
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tandem.observability import otlp


def test_our_schema_has_the_field_numbers_of_the_otlp_copy_xds_protos_ships():
    """xds-protos' (older) copy of the OTLP protos is an independent source of the field
    numbers; the fields renamed since (instrumentation library → scope) keep their numbers."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as theirs

    renamed = {"instrumentation_library_spans": "scope_spans", "instrumentation_library": "scope"}

    def compare(ours, other, seen):
        if other.full_name in seen:
            return
        seen.add(other.full_name)
        for field in other.fields:
            name = renamed.get(field.name, field.name)
            mine = ours.fields_by_name.get(name)
            if mine is None:
                continue  # not needed for export (e.g. deprecated fields)
            assert mine.number == field.number, f"{ours.full_name}.{name}"
            assert mine.type == field.type, f"{ours.full_name}.{name}"
            if field.message_type is not None:
                compare(mine.message_type, field.message_type, seen)

    compare(
        otlp.ExportTraceServiceRequest.DESCRIPTOR,
        theirs.ExportTraceServiceRequest.DESCRIPTOR,
        set(),
    )


def test_encode_round_trips_span_ids_parents_kinds_and_attributes():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    attrs = {"db.system": "redis", "n": 3}
    with (
        tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer,
        tracer.start_as_current_span("SET statestore", kind=SpanKind.CLIENT, attributes=attrs),
    ):
        pass
    request = otlp.ExportTraceServiceRequest.FromString(
        otlp.encode(memory.get_finished_spans()).SerializeToString()
    )
    [rs] = request.resource_spans
    service = {kv.key: kv.value.string_value for kv in rs.resource.attributes}["service.name"]
    assert service == "orders"
    spans = {s.name: s for ss in rs.scope_spans for s in ss.spans}
    inner = spans["SET statestore"]
    assert inner.parent_span_id == outer.get_span_context().span_id.to_bytes(8, "big")
    assert inner.trace_id == outer.get_span_context().trace_id.to_bytes(16, "big")
    assert inner.kind == 3 and spans["outer"].kind == 2
    attrs = {kv.key: kv.value for kv in inner.attributes}
    assert attrs["db.system"].string_value == "redis" and attrs["n"].int_value == 3
    assert inner.end_time_unix_nano >= inner.start_time_unix_nano > 0


def test_the_exporter_never_imports_the_opentelemetry_proto_files():
    code = (
        "import sys; import tandem.observability.tracing, tandem.observability.otlp; "
        "print([m for m in sys.modules if m.startswith('opentelemetry.proto')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
