"""Dapr JSON bodies for Envoy's own local replies (HCM ``local_reply_config``).

Envoy answers by itself when there is no route, no healthy upstream, a connect failure, a
timeout, an overflow, a body over the buffer limit or a request it cannot parse (codec
errors: 400, 431, 501); by default those answers are
``text/plain``. Dapr clients expect ``{"errorCode", "message"}``. The runtime's answers
(ext_proc ``ImmediateResponse``) also travel through ``sendLocalReply``, so every mapper
here matches on an Envoy *response flag*, which an ImmediateResponse never carries; the one
exception is 413, which Envoy raises without a flag when a buffered body is too large.

The app id in messages comes from route metadata (``tandem.app_id``), so one mapper serves
every invoke route.

With ``api_transport: http`` the runtime's answers are upstream responses, which mappers
never see. Only Envoy's own failures to reach the runtime are local replies; they are told
apart from failed invocations by the ``x-tandem-app-id`` request header, which only the
runtime route sets (a client that sends it on an invocation only rewords its own error).
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import struct_pb2, wrappers_pb2

from tandem.xds.translate.names import METADATA_APP_ID, METADATA_NAMESPACE

APP_ID_FIELD = "app_id"
APP_ID_FORMAT = f"%METADATA(ROUTE:{METADATA_NAMESPACE}:{APP_ID_FIELD})%"


@dataclass(frozen=True, slots=True)
class _Mapping:
    flags: tuple[str, ...]
    status: int
    error_code: str
    message: str


def _invoke_failure(flags: tuple[str, ...], err: str) -> _Mapping:
    # Dapr answers every failed invocation with 500 ERR_DIRECT_INVOKE; we keep that status so
    # SDKs behave as they do against daprd, and say what went wrong in the message.
    return _Mapping(
        flags, 500, "ERR_DIRECT_INVOKE", f"failed to invoke, id: {APP_ID_FORMAT}, err: {err}"
    )


_MAPPINGS: tuple[_Mapping, ...] = (
    # NC: a route still names a cluster that just left (routes update after clusters).
    _invoke_failure(("NC",), f"couldn't find service: {APP_ID_FORMAT}"),
    _invoke_failure(("UH",), "no healthy upstream"),
    _invoke_failure(("UF",), "upstream connect error"),
    _invoke_failure(("UC", "UR", "LR"), "upstream connection reset"),
    _invoke_failure(("UO",), "upstream overflow (circuit breaker)"),
    _invoke_failure(("URX",), "upstream retry limit exceeded"),
    _invoke_failure(("UT", "UMSDR"), "upstream request timeout"),
    # Every listener ends in a catch-all route, so this is a safety net, not a code path.
    _Mapping(("NR",), 404, "ERR_DIRECT_INVOKE", "failed to invoke, err: no route for this request"),
)


# Envoy could not get an answer from the runtime's HTTP front door (it is down, restarting,
# or dropped the connection): 503 as ext_proc's `status_on_error` (504 on a timeout, as
# ext_proc's message timeout), in Dapr's JSON shape.
_RUNTIME_MAPPINGS: tuple[_Mapping, ...] = (
    _Mapping(("UF", "UH", "NC"), 503, "ERR_INTERNAL", "the runtime is not reachable"),
    _Mapping(("UC", "UR", "LR"), 503, "ERR_INTERNAL", "the runtime closed the connection"),
    _Mapping(("UO",), 503, "ERR_INTERNAL", "too many requests in progress in the runtime"),
    _Mapping(("UT", "UMSDR"), 504, "ERR_INTERNAL", "the runtime did not answer in time"),
)


def _json_body(
    error_code: str, message: str
) -> substitution_format_string_pb2.SubstitutionFormatString:
    body = struct_pb2.Struct()
    body.update({"errorCode": error_code, "message": message})
    # json_format escapes substituted values and sets content-type: application/json.
    return substitution_format_string_pb2.SubstitutionFormatString(json_format=body)


def invoke_error_body(
    app_id_expr: str, err: str
) -> substitution_format_string_pb2.SubstitutionFormatString:
    """Dapr's ERR_DIRECT_INVOKE body; ``app_id_expr`` may be a literal or a format command."""
    return _json_body("ERR_DIRECT_INVOKE", f"failed to invoke, id: {app_id_expr}, err: {err}")


def error_body(
    error_code: str, message: str
) -> substitution_format_string_pb2.SubstitutionFormatString:
    return _json_body(error_code, message)


def _flag_mapper(mapping: _Mapping) -> hcm_pb2.ResponseMapper:
    return hcm_pb2.ResponseMapper(
        filter=accesslog_pb2.AccessLogFilter(
            response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=list(mapping.flags))
        ),
        status_code=wrappers_pb2.UInt32Value(value=mapping.status),
        body_format_override=error_body(mapping.error_code, mapping.message),
    )


def _runtime_mapper(mapping: _Mapping) -> hcm_pb2.ResponseMapper:
    return hcm_pb2.ResponseMapper(
        filter=accesslog_pb2.AccessLogFilter(
            and_filter=accesslog_pb2.AndFilter(
                filters=[
                    accesslog_pb2.AccessLogFilter(
                        header_filter=accesslog_pb2.HeaderFilter(
                            header=rc.HeaderMatcher(name=METADATA_APP_ID, present_match=True)
                        )
                    ),
                    accesslog_pb2.AccessLogFilter(
                        response_flag_filter=accesslog_pb2.ResponseFlagFilter(
                            flags=list(mapping.flags)
                        )
                    ),
                ]
            )
        ),
        status_code=wrappers_pb2.UInt32Value(value=mapping.status),
        body_format_override=error_body(mapping.error_code, mapping.message),
    )


def _codec_error_mapper() -> hcm_pb2.ResponseMapper:
    """Envoy's own answer to a request it could not parse (400 malformed, 431 headers too
    large, 501 unsupported transfer encoding), in Dapr's JSON shape; the status stays
    Envoy's. Such a reply is sent before the request headers exist, so the mapper sees no
    ``:path``: that, not the status alone, tells it from the runtime's own 400s (ext_proc
    answers travel as local replies too, always with a path). The DPE response flag is not
    set yet when mappers run, so it cannot be the test."""
    statuses = [
        _status_filter(code, f"tandem.local_reply.codec_error_{code}") for code in (400, 431, 501)
    ]
    no_request = accesslog_pb2.AccessLogFilter(
        header_filter=accesslog_pb2.HeaderFilter(
            header=rc.HeaderMatcher(name=":path", present_match=True, invert_match=True)
        )
    )
    return hcm_pb2.ResponseMapper(
        filter=accesslog_pb2.AccessLogFilter(
            and_filter=accesslog_pb2.AndFilter(
                filters=[
                    accesslog_pb2.AccessLogFilter(
                        or_filter=accesslog_pb2.OrFilter(filters=statuses)
                    ),
                    no_request,
                ]
            )
        ),
        body_format_override=error_body(
            "ERR_MALFORMED_REQUEST", "malformed HTTP request: %RESPONSE_CODE_DETAILS%"
        ),
    )


def _too_large_mapper(max_body_bytes: int) -> hcm_pb2.ResponseMapper:
    return hcm_pb2.ResponseMapper(
        filter=_status_filter(413, "tandem.local_reply.payload_too_large"),
        body_format_override=error_body(
            "ERR_REQUEST_TOO_LARGE",
            f"request body exceeds the limit of {max_body_bytes} bytes",
        ),
    )


def _status_filter(status: int, runtime_key: str) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(
        status_code_filter=accesslog_pb2.StatusCodeFilter(
            comparison=accesslog_pb2.ComparisonFilter(
                op=accesslog_pb2.ComparisonFilter.EQ,
                value=base_pb2.RuntimeUInt32(default_value=status, runtime_key=runtime_key),
            )
        )
    )


def _access_denied_mapper(callee: str) -> hcm_pb2.ResponseMapper:
    """Dapr answers a callee's access-control denial with 403 ERR_DIRECT_INVOKE.

    The RBAC filter sets no response flag, so this matches the status: on the inbound
    listener the only local reply with a 403 is an RBAC denial (the app's own 403s are
    upstream responses, which mappers never touch).
    """
    return hcm_pb2.ResponseMapper(
        filter=_status_filter(403, "tandem.local_reply.access_denied"),
        body_format_override=error_body(
            "ERR_DIRECT_INVOKE",
            f"failed to invoke, id: {callee}, err: access control policy has denied access "
            "to id: %DOWNSTREAM_PEER_URI_SAN% operation: %REQ(:path):256% "
            "verb: %REQ(:method)%",
        ),
    )


def local_reply_config(
    max_body_bytes: int | None = None,
    access_controlled: str | None = None,
    runtime_http: bool = False,
) -> hcm_pb2.LocalReplyConfig:
    """Mappers for a listener that routes invocations; 413 only where bodies are buffered,
    403 where ``access_controlled`` (the callee's app id) runs an RBAC filter, and first (the
    first match wins) Envoy's failures to reach the runtime where ``runtime_http`` routes the
    Dapr HTTP API to it."""
    mappers = [_codec_error_mapper()]
    mappers += [_runtime_mapper(m) for m in _RUNTIME_MAPPINGS] if runtime_http else []
    mappers += [_flag_mapper(m) for m in _MAPPINGS]
    if access_controlled is not None:
        mappers.append(_access_denied_mapper(access_controlled))
    if max_body_bytes is not None:
        mappers.append(_too_large_mapper(max_body_bytes))
    return hcm_pb2.LocalReplyConfig(mappers=mappers)
