"""OTLP trace messages in a private descriptor pool, and a span exporter over gRPC or HTTP.

Why not ``opentelemetry-proto`` and its exporters: ``xds-protos`` (which the control plane
needs) ships a stale copy of the same ``opentelemetry/proto`` files, and pip installs it
*after* ``opentelemetry-proto`` (its dependency tree is deeper), so a fresh
``pip install`` leaves files the OTLP exporters cannot import (``envoy-notes.md`` §0.7).
Building the few trace messages here, in a pool of our own, makes the result the same
whatever was installed in whatever order. The schema is OTLP's (field numbers from the
OTLP specification); ``tests/observability`` checks it against the copy xds-protos ships
and against spans Envoy itself exports.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

log = logging.getLogger("tandem.tracing")

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_COMMON, _RESOURCE = "opentelemetry.proto.common.v1", "opentelemetry.proto.resource.v1"
_TRACE, _COLLECTOR = "opentelemetry.proto.trace.v1", "opentelemetry.proto.collector.trace.v1"

# (name, number, type, label, type name, oneof index)
_Field = tuple[str, int, int, int, str, int | None]


def _field(
    name: str,
    number: int,
    kind: int,
    type_name: str = "",
    *,
    repeated: bool = False,
    oneof: int | None = None,
) -> _Field:
    return (name, number, kind, _REP if repeated else _OPT, type_name, oneof)


def _message(
    name: str,
    fields: Sequence[_Field],
    oneofs: Sequence[str] = (),
    nested: Sequence[descriptor_pb2.DescriptorProto] = (),
    enums: Sequence[descriptor_pb2.EnumDescriptorProto] = (),
) -> descriptor_pb2.DescriptorProto:
    msg = descriptor_pb2.DescriptorProto(name=name)
    for oneof in oneofs:
        msg.oneof_decl.add(name=oneof)
    for fname, number, kind, label, type_name, oneof_index in fields:
        f = msg.field.add(name=fname, number=number, type=kind, label=label)  # type: ignore[arg-type]
        if type_name:
            f.type_name = type_name
        if oneof_index is not None:
            f.oneof_index = oneof_index
    msg.nested_type.extend(nested)
    msg.enum_type.extend(enums)
    return msg


def _enum(name: str, values: Sequence[str]) -> descriptor_pb2.EnumDescriptorProto:
    enum = descriptor_pb2.EnumDescriptorProto(name=name)
    for number, value in enumerate(values):
        enum.value.add(name=value, number=number)
    return enum


def _files() -> list[descriptor_pb2.FileDescriptorProto]:
    S, B, I64, D, BYTES = _F.TYPE_STRING, _F.TYPE_BOOL, _F.TYPE_INT64, _F.TYPE_DOUBLE, _F.TYPE_BYTES
    M, U32, F32, F64, E = (
        _F.TYPE_MESSAGE,
        _F.TYPE_UINT32,
        _F.TYPE_FIXED32,
        _F.TYPE_FIXED64,
        _F.TYPE_ENUM,
    )
    c = f".{_COMMON}"
    common = descriptor_pb2.FileDescriptorProto(
        name="tandem/otlp/common.proto", package=_COMMON, syntax="proto3"
    )
    common.message_type.extend(
        [
            _message(
                "AnyValue",
                [
                    _field("string_value", 1, S, oneof=0),
                    _field("bool_value", 2, B, oneof=0),
                    _field("int_value", 3, I64, oneof=0),
                    _field("double_value", 4, D, oneof=0),
                    _field("array_value", 5, M, f"{c}.ArrayValue", oneof=0),
                    _field("kvlist_value", 6, M, f"{c}.KeyValueList", oneof=0),
                    _field("bytes_value", 7, BYTES, oneof=0),
                ],
                oneofs=["value"],
            ),
            _message("ArrayValue", [_field("values", 1, M, f"{c}.AnyValue", repeated=True)]),
            _message("KeyValueList", [_field("values", 1, M, f"{c}.KeyValue", repeated=True)]),
            _message("KeyValue", [_field("key", 1, S), _field("value", 2, M, f"{c}.AnyValue")]),
            _message(
                "InstrumentationScope",
                [
                    _field("name", 1, S),
                    _field("version", 2, S),
                    _field("attributes", 3, M, f"{c}.KeyValue", repeated=True),
                    _field("dropped_attributes_count", 4, U32),
                ],
            ),
        ]
    )
    resource = descriptor_pb2.FileDescriptorProto(
        name="tandem/otlp/resource.proto",
        package=_RESOURCE,
        syntax="proto3",
        dependency=["tandem/otlp/common.proto"],
    )
    resource.message_type.append(
        _message(
            "Resource",
            [
                _field("attributes", 1, M, f"{c}.KeyValue", repeated=True),
                _field("dropped_attributes_count", 2, U32),
            ],
        )
    )
    t = f".{_TRACE}"
    trace = descriptor_pb2.FileDescriptorProto(
        name="tandem/otlp/trace.proto",
        package=_TRACE,
        syntax="proto3",
        dependency=["tandem/otlp/common.proto", "tandem/otlp/resource.proto"],
    )
    event = _message(
        "Event",
        [
            _field("time_unix_nano", 1, F64),
            _field("name", 2, S),
            _field("attributes", 3, M, f"{c}.KeyValue", repeated=True),
            _field("dropped_attributes_count", 4, U32),
        ],
    )
    link = _message(
        "Link",
        [
            _field("trace_id", 1, BYTES),
            _field("span_id", 2, BYTES),
            _field("trace_state", 3, S),
            _field("attributes", 4, M, f"{c}.KeyValue", repeated=True),
            _field("dropped_attributes_count", 5, U32),
            _field("flags", 6, F32),
        ],
    )
    kinds = _enum(
        "SpanKind",
        [
            "SPAN_KIND_UNSPECIFIED",
            "SPAN_KIND_INTERNAL",
            "SPAN_KIND_SERVER",
            "SPAN_KIND_CLIENT",
            "SPAN_KIND_PRODUCER",
            "SPAN_KIND_CONSUMER",
        ],
    )
    codes = _enum("StatusCode", ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"])
    trace.message_type.extend(
        [
            _message(
                "ResourceSpans",
                [
                    _field("resource", 1, M, f".{_RESOURCE}.Resource"),
                    _field("scope_spans", 2, M, f"{t}.ScopeSpans", repeated=True),
                    _field("schema_url", 3, S),
                ],
            ),
            _message(
                "ScopeSpans",
                [
                    _field("scope", 1, M, f"{c}.InstrumentationScope"),
                    _field("spans", 2, M, f"{t}.Span", repeated=True),
                    _field("schema_url", 3, S),
                ],
            ),
            _message(
                "Span",
                [
                    _field("trace_id", 1, BYTES),
                    _field("span_id", 2, BYTES),
                    _field("trace_state", 3, S),
                    _field("parent_span_id", 4, BYTES),
                    _field("flags", 16, F32),
                    _field("name", 5, S),
                    _field("kind", 6, E, f"{t}.Span.SpanKind"),
                    _field("start_time_unix_nano", 7, F64),
                    _field("end_time_unix_nano", 8, F64),
                    _field("attributes", 9, M, f"{c}.KeyValue", repeated=True),
                    _field("dropped_attributes_count", 10, U32),
                    _field("events", 11, M, f"{t}.Span.Event", repeated=True),
                    _field("dropped_events_count", 12, U32),
                    _field("links", 13, M, f"{t}.Span.Link", repeated=True),
                    _field("dropped_links_count", 14, U32),
                    _field("status", 15, M, f"{t}.Status"),
                ],
                nested=[event, link],
                enums=[kinds],
            ),
            _message(
                "Status",
                [
                    _field("message", 2, S),
                    _field("code", 3, E, f"{t}.Status.StatusCode"),
                ],
                enums=[codes],
            ),
        ]
    )
    collector = descriptor_pb2.FileDescriptorProto(
        name="tandem/otlp/trace_service.proto",
        package=_COLLECTOR,
        syntax="proto3",
        dependency=["tandem/otlp/trace.proto"],
    )
    collector.message_type.extend(
        [
            _message(
                "ExportTraceServiceRequest",
                [
                    _field("resource_spans", 1, M, f"{t}.ResourceSpans", repeated=True),
                ],
            ),
            _message(
                "ExportTraceServiceResponse",
                [
                    _field("partial_success", 1, M, f".{_COLLECTOR}.ExportTracePartialSuccess"),
                ],
            ),
            _message(
                "ExportTracePartialSuccess",
                [
                    _field("rejected_spans", 1, I64),
                    _field("error_message", 2, S),
                ],
            ),
        ]
    )
    return [common, resource, trace, collector]


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    for file in _files():
        pool.Add(file)
    names = {
        "AnyValue": f"{_COMMON}.AnyValue",
        "KeyValue": f"{_COMMON}.KeyValue",
        "ExportTraceServiceRequest": f"{_COLLECTOR}.ExportTraceServiceRequest",
        "ExportTraceServiceResponse": f"{_COLLECTOR}.ExportTraceServiceResponse",
    }
    return {
        short: message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
        for short, full in names.items()
    }


_MESSAGES = _classes()  # immutable message classes, built once
ExportTraceServiceRequest: Any = _MESSAGES["ExportTraceServiceRequest"]
ExportTraceServiceResponse: Any = _MESSAGES["ExportTraceServiceResponse"]

_KINDS = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_CODES = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


def _set_value(target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list | tuple):
        for item in value:
            _set_value(target.array_value.values.add(), item)
    else:
        target.string_value = str(value)


def _attributes(target: Any, attributes: Any) -> None:
    for key, value in (attributes or {}).items():
        kv = target.add(key=key)
        _set_value(kv.value, value)


def encode(spans: Sequence[ReadableSpan]) -> Any:
    """An ``ExportTraceServiceRequest`` of ``spans``, grouped by resource and scope."""
    request = ExportTraceServiceRequest()
    by_resource: dict[int, Any] = {}
    by_scope: dict[tuple[int, str, str], Any] = {}
    for span in spans:
        ctx = span.context
        if ctx is None:
            continue
        resource = span.resource
        rs = by_resource.get(id(resource))
        if rs is None:
            rs = request.resource_spans.add()
            _attributes(rs.resource.attributes, resource.attributes)
            by_resource[id(resource)] = rs
        scope = span.instrumentation_scope
        key = (id(resource), scope.name if scope else "", scope.version or "" if scope else "")
        ss = by_scope.get(key)
        if ss is None:
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = key[1], key[2]
            by_scope[key] = ss
        out = ss.spans.add(
            trace_id=ctx.trace_id.to_bytes(16, "big"),
            span_id=ctx.span_id.to_bytes(8, "big"),
            flags=int(ctx.trace_flags)
            | 0x100
            | (0x200 if span.parent and span.parent.is_remote else 0),
            name=span.name,
            kind=_KINDS.get(span.kind, 0),
            start_time_unix_nano=span.start_time or 0,
            end_time_unix_nano=span.end_time or 0,
        )
        if ctx.trace_state:
            out.trace_state = ctx.trace_state.to_header()
        if span.parent is not None:
            out.parent_span_id = span.parent.span_id.to_bytes(8, "big")
        _attributes(out.attributes, span.attributes)
        for event in span.events:
            ev = out.events.add(time_unix_nano=event.timestamp, name=event.name)
            _attributes(ev.attributes, event.attributes)
        out.status.code = _CODES.get(span.status.status_code, 0)
        if span.status.description:
            out.status.message = span.status.description
    return request


class OtlpSpanExporter(SpanExporter):
    """OTLP/gRPC (``protocol: grpc``) or OTLP/HTTP protobuf (``protocol: http``), one attempt
    per batch with a short timeout: a collector that is down costs a dropped batch, never
    a request (the batch processor runs in its own thread)."""

    def __init__(
        self,
        *,
        grpc_target: str | None = None,
        http_url: str | None = None,
        secure: bool = False,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 5.0,
    ) -> None:
        self._timeout = timeout
        self._headers = tuple((k.lower(), v) for k, v in headers)
        self._http_url = http_url
        self._channel: grpc.Channel | None = None
        self._export: Any = None
        self._lock = threading.Lock()
        self.failed_batches = 0
        self.failed_spans = 0
        if grpc_target is not None:
            self._channel = (
                grpc.secure_channel(grpc_target, grpc.ssl_channel_credentials())
                if secure
                else grpc.insecure_channel(grpc_target)
            )
            self._export = self._channel.unary_unary(
                EXPORT_METHOD,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=ExportTraceServiceResponse.FromString,
            )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = encode(spans)
        try:
            if self._export is not None:
                self._export(body, timeout=self._timeout, metadata=self._headers)
            elif self._http_url is not None:
                req = urllib.request.Request(
                    self._http_url,
                    data=body.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf", **dict(self._headers)},
                    method="POST",
                )
                with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                    resp.read()
            return SpanExportResult.SUCCESS
        except Exception as exc:  # a collector problem must never reach a request
            with self._lock:
                self.failed_batches += 1
                self.failed_spans += len(spans)
                first = self.failed_batches == 1
            if first:
                log.warning("cannot export spans to the collector (%s); dropping them", exc)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
