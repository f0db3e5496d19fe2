"""The OpenTelemetry SDK side of :class:`tandem.observability.tracing.Tracing`: a tracer
provider with its sampler, exporter and bounded batch queue. Imported only when tracing is
configured: the SDK (and psutil, which its resources load) is ~3 MB a sidecar without
tracing does not carry."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tandem.observability.export import TraceExport
from tandem.observability.tracing import EXPORT_TIMEOUT_MS, MAX_QUEUE


class CountingBatchProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans its full queue pushes out (it drops the
    oldest silently) and those in batches the collector did not take."""

    def __init__(self, exporter: SpanExporter) -> None:
        super().__init__(
            exporter, max_queue_size=MAX_QUEUE, export_timeout_millis=EXPORT_TIMEOUT_MS
        )
        self._exporter_ref = exporter
        self.queue_dropped = 0

    def on_end(self, span: ReadableSpan) -> None:
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        if queue is not None and len(queue) >= MAX_QUEUE:
            self.queue_dropped += 1
        super().on_end(span)

    @property
    def dropped(self) -> int:
        return self.queue_dropped + int(getattr(self._exporter_ref, "failed_spans", 0) or 0)


def _exporter(export: TraceExport) -> SpanExporter | None:
    if export.exporter is None:
        return None
    if export.exporter == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        return ZipkinExporter(endpoint=export.url, timeout=EXPORT_TIMEOUT_MS // 1000)
    from tandem.observability.otlp import OtlpSpanExporter

    if export.exporter == "otlp_grpc":
        return OtlpSpanExporter(
            grpc_target=f"{export.host}:{export.port}",
            secure=export.secure,
            headers=export.headers,
            timeout=EXPORT_TIMEOUT_MS / 1000,
        )
    return OtlpSpanExporter(
        http_url=export.url, headers=export.headers, timeout=EXPORT_TIMEOUT_MS / 1000
    )


def provider_for(
    export: TraceExport, app_id: str
) -> tuple[TracerProvider, CountingBatchProcessor | None]:
    """The tracer provider for ``export`` and its batch processor (None: no exporter)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": app_id}),
        sampler=ParentBased(TraceIdRatioBased(export.sampling_rate)),
    )
    batch = None
    exporter = _exporter(export)
    if exporter is not None:
        batch = CountingBatchProcessor(exporter)
        provider.add_span_processor(batch)
    if export.stdout:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider, batch
