"""The runtime's own spans (state, publish, delivery), children of Envoy's.

Envoy starts or continues the trace on every listener and hands its span to the runtime
in ``traceparent`` (HTTP headers from the router, gRPC metadata on the ext_proc and gRPC
API calls). The doors attach that context (:func:`incoming`); the blocks then open their
spans with :meth:`Tracing.span`, which become its children and carry OpenTelemetry's
semantic attributes. Spans leave through a bounded batch queue in its own thread: a slow
or dead collector drops spans (counted in :attr:`Tracing.dropped_spans`), never delays a
request.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tandem.observability.export import TraceExport, trace_export
from tandem.resources.configuration import Configuration

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from tandem.observability.tracing_sdk import CountingBatchProcessor

log = logging.getLogger("tandem.tracing")

_PROPAGATOR = TraceContextTextMapPropagator()
# Spans waiting for the exporter; beyond this they are dropped (and counted).
MAX_QUEUE = 2048
EXPORT_TIMEOUT_MS = 5000


class Tracing:
    """One runtime's tracer. ``Tracing(None, app_id)`` makes no spans at all."""

    def __init__(self, export: TraceExport | None, app_id: str) -> None:
        self._provider: TracerProvider | None = None
        self._batch: CountingBatchProcessor | None = None
        if export is None or not export.on:
            self.tracer: trace.Tracer = trace.NoOpTracer()
            return
        # The SDK (with psutil) loads only when tracing is configured.
        from tandem.observability.tracing_sdk import provider_for

        self._provider, self._batch = provider_for(export, app_id)
        self.tracer = self._provider.get_tracer("tandem")

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    @property
    def dropped_spans(self) -> int:
        """Spans the queue had no room for, plus those in batches the collector refused."""
        return 0 if self._batch is None else self._batch.dropped

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        kind: trace.SpanKind,
        attributes: Mapping[str, Any],
        parent: otel_context.Context | None = None,
    ) -> Iterator[trace.Span]:
        """A span under ``parent`` (default: the current context); an exception marks it as an
        error and passes."""
        if self._provider is None:
            yield trace.INVALID_SPAN
            return
        with self.tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=dict(attributes)
        ) as s:
            yield s

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


NO_TRACING = Tracing(None, "")


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span, or "" outside a recorded span."""
    carrier: dict[str, str] = {}
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return ""
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def traceparent_of(span: trace.Span) -> str:
    carrier: dict[str, str] = {}
    if not span.get_span_context().is_valid:
        return ""
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


_NO_CONTEXT = contextlib.nullcontext()


def incoming(carrier: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
    """Make the caller's trace context (``traceparent``/``tracestate``) current.

    Without a ``traceparent`` (no tracing in front): a shared no-op, not a generator per
    request (this runs for every API request)."""
    return _attached(carrier) if "traceparent" in carrier else _NO_CONTEXT


@contextlib.contextmanager
def _attached(carrier: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(_PROPAGATOR.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def parent_context(traceparent: str, tracestate: str = "") -> otel_context.Context:
    """The context of a ``traceparent`` carried in an event (pub/sub delivery)."""
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier)


def state_attributes(store: str, component_type: str, operation: str) -> dict[str, str]:
    """OpenTelemetry database attributes of one state store call."""
    return {
        "db.system": component_type.removeprefix("state.") or "state",
        "db.name": store,
        "db.operation": operation,
        "dapr.component.type": component_type,
    }


def messaging_attributes(
    pubsub: str, component_type: str, topic: str, operation: str
) -> dict[str, str]:
    """OpenTelemetry messaging attributes of one publish or delivery."""
    return {
        "messaging.system": component_type.removeprefix("pubsub.") or "pubsub",
        "messaging.destination.name": topic,
        "messaging.operation": operation,
        "dapr.pubsub.name": pubsub,
        "dapr.component.type": component_type,
    }


def runtime_tracing(config: Configuration | None, app_id: str) -> Tracing:
    """The runtime's tracer from its ``--config`` (raises TraceExportError on a bad endpoint)."""
    export = trace_export(config.tracing) if config is not None else None
    return Tracing(export, app_id)
