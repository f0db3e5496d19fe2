"""spec.tracing → one exporter (shared by Envoy's tracer and the runtime's)."""

from __future__ import annotations

import pytest

from tandem.observability.export import TraceExport, TraceExportError, trace_export
from tandem.resources.common import MetadataItem
from tandem.resources.configuration import OtelExporter, Tracing


def test_otel_grpc_host_port():
    t = trace_export(
        Tracing(
            sampling_rate=1.0,
            otel=OtelExporter("localhost:4317", "grpc", headers=(MetadataItem("k", "v"),)),
        )
    )
    assert t is not None
    assert (t.exporter, t.host, t.port, t.path, t.secure) == (
        "otlp_grpc",
        "localhost",
        4317,
        "",
        False,
    )
    assert t.headers == (("k", "v"),)
    assert TraceExport.from_metadata(t.to_metadata()) == t


def test_otel_http_defaults_the_path_and_https_means_secure():
    t = trace_export(Tracing(sampling_rate=0.5, otel=OtelExporter("https://c.example", "http")))
    assert t is not None
    assert t.url == "https://c.example:4318/v1/traces"


def test_zipkin_url_and_dapr_default_rate():
    t = trace_export(Tracing(zipkin_endpoint="http://localhost:9411/api/v2/spans"))
    assert t is not None
    assert t.exporter == "zipkin" and t.url == "http://localhost:9411/api/v2/spans"
    assert t.sampling_rate == 0.0001


def test_rate_zero_is_off_and_no_exporter_is_none():
    t = trace_export(Tracing(sampling_rate=0.0, otel=OtelExporter("localhost:4317", "grpc")))
    assert t is not None and not t.on
    assert trace_export(Tracing(sampling_rate=1.0)) is None


def test_bad_endpoint_names_the_field():
    with pytest.raises(TraceExportError, match="otel.endpointAddress"):
        trace_export(Tracing(otel=OtelExporter("ftp://x:1", "grpc")))


def test_secret_headers_are_refused_by_name():
    header = MetadataItem("token", None)
    with pytest.raises(TraceExportError, match="headers 'token'"):
        trace_export(Tracing(otel=OtelExporter("localhost:4317", "grpc", headers=(header,))))
