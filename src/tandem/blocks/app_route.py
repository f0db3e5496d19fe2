"""Which way the runtime's HTTP requests to its own app go: straight to the app's port, or
through the sidecar Envoy's app channel listener (``dapr_app_channel``).

Envoy's app channel is needed only for what the runtime does not do itself: TLS and h2c
to the app (``--app-protocol https|h2c``, and the gRPC protocols), ``--app-max-concurrency``
(one limit shared with the invocations Envoy forwards to the app) and the Configuration's
``appHttpPipeline`` (middleware Envoy runs on every request to the app). The listener
adds no tracing, retries or access log of its own: Resiliency for deliveries, tracing and
metrics are the runtime's. Without any of those, a request through Envoy costs one more
process hop (two more socket reads and writes in Envoy) and nothing else, so the runtime
calls the app directly, as Dapr itself does.
"""

from __future__ import annotations


def needs_envoy(protocol: str, max_concurrency: int | None, app_pipeline: bool) -> bool:
    """True when the runtime's requests to the app must go through Envoy's app channel."""
    return protocol != "http" or max_concurrency is not None or app_pipeline
