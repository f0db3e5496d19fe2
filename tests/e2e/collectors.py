"""Real span receivers for the tracing tests: an OTLP/gRPC collector (the OTLP collector
protocol, ``TraceService/Export``) and a Zipkin v2 JSON collector, each on a free loopback
port in a thread of the test process, keeping every span it is sent."""

from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from harness import wait_until

from tandem.observability import otlp

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    attributes: dict[str, Any]


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


@dataclass
class Collector:
    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    _stop: Any = None

    def add(self, spans: list[Span]) -> None:
        with self.lock:
            self.requests += 1
            self.spans.extend(spans)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.snapshot() if s.trace_id == trace_id]

    def wait_for(self, pred, what: str, timeout: float = 30.0) -> list[Span]:
        return wait_until(lambda: [s for s in self.snapshot() if pred(s)] or None, timeout, what)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()


def _decode_otlp(request: Any) -> list[Span]:
    out = []
    for rs in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        name=s.name,
                        kind=_KINDS.get(s.kind, str(s.kind)),
                        service=str(resource.get("service.name", "")),
                        attributes={kv.key: _value(kv.value) for kv in s.attributes},
                    )
                )
    return out


def start_otlp_grpc(port: int) -> Collector:
    collector = Collector(port=port)

    def export(request: Any, context: grpc.ServicerContext) -> Any:
        collector.add(_decode_otlp(request))
        return otlp.ExportTraceServiceResponse()

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export,
                request_deserializer=otlp.ExportTraceServiceRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    collector._stop = lambda: server.stop(0)
    return collector


def start_zipkin(port: int) -> Collector:
    collector = Collector(port=port)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("content-length") or 0))
            chunks = []  # Envoy streams its reports chunked
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = self._body()
            spans = [
                Span(
                    trace_id=s["traceId"],
                    span_id=s["id"],
                    parent_id=s.get("parentId", ""),
                    name=s.get("name", ""),
                    kind=s.get("kind", ""),
                    service=(s.get("localEndpoint") or {}).get("serviceName", ""),
                    attributes=s.get("tags") or {},
                )
                for s in json.loads(body or b"[]")
            ]
            collector.add(spans)
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    collector._stop = stop
    return collector
