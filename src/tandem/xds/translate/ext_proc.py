"""The ext_proc filter that hands the Dapr HTTP API to the runtime, and its per-route off switch."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, grpc_service_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.type.v3 import http_status_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import seconds
from tandem.xds.translate.names import METADATA_APP_ID, RUNTIME_CLUSTER

_Mode = processing_mode_pb2.ProcessingMode

# Envoy's default is 200 ms, far too short for state stores, pub/sub, actors and workflows.
MESSAGE_TIMEOUT_SECONDS = 30
# Lets the runtime extend one message's deadline (override_message_timeout) up to this.
MAX_MESSAGE_TIMEOUT_SECONDS = 300


def ext_proc_filter(sidecar: Sidecar) -> ext_proc_pb2.ExternalProcessor:
    return ext_proc_pb2.ExternalProcessor(
        grpc_service=grpc_service_pb2.GrpcService(
            # envoy_grpc (not google_grpc) so Envoy injects trace context into the side stream.
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=RUNTIME_CLUSTER),
            # One runtime could serve several sidecars; it learns which from this metadata.
            initial_metadata=[base_pb2.HeaderValue(key=METADATA_APP_ID, value=sidecar.app_id)],
        ),
        processing_mode=_Mode(
            request_header_mode=_Mode.SEND,
            request_body_mode=_Mode.BUFFERED,
            request_trailer_mode=_Mode.SKIP,
            # The runtime answers with ImmediateResponse; a response round trip would be waste.
            response_header_mode=_Mode.SKIP,
            response_body_mode=_Mode.NONE,
            response_trailer_mode=_Mode.SKIP,
        ),
        message_timeout=seconds(MESSAGE_TIMEOUT_SECONDS),
        max_message_timeout=seconds(MAX_MESSAGE_TIMEOUT_SECONDS),
        # A dead runtime must give a clean 503, never let API calls fall through to the router.
        failure_mode_allow=False,
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.ServiceUnavailable),
    )


def ext_proc_disabled() -> ext_proc_pb2.ExtProcPerRoute:
    """Per-route config that keeps invocations out of the runtime."""
    return ext_proc_pb2.ExtProcPerRoute(disabled=True)
