"""Dapr's error vocabulary, mapped to HTTP and gRPC status in exactly one place.

Blocks raise :class:`DaprError`; the HTTP front door renders it as Dapr's JSON error body
and the gRPC front door as a ``google.rpc.Status`` with the same code and message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

# errorCode -> (HTTP status, gRPC status). Codes whose status depends on the case
# (e.g. ERR_STATE_SAVE: 500, 409 on etag mismatch, 400 on a bad etag) pass an explicit
# ``http_status``/``grpc_status`` when raised.
_STATUS: dict[str, tuple[int, grpc.StatusCode]] = {
    "ERR_BAD_REQUEST": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_API_UNIMPLEMENTED": (501, grpc.StatusCode.UNIMPLEMENTED),
    "ERR_BODY_READ": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_MALFORMED_REQUEST": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_MALFORMED_REQUEST_DATA": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_MALFORMED_RESPONSE": (500, grpc.StatusCode.INTERNAL),
    "ERR_INTERNAL": (500, grpc.StatusCode.INTERNAL),
    "ERR_REQUEST_TOO_LARGE": (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "ERR_DIRECT_INVOKE": (500, grpc.StatusCode.INTERNAL),
    "ERR_HEALTH_NOT_READY": (500, grpc.StatusCode.INTERNAL),
    "ERR_OUTBOUND_HEALTH_NOT_READY": (500, grpc.StatusCode.INTERNAL),
    "ERR_HEALTH_APPID_NOT_MATCH": (500, grpc.StatusCode.INTERNAL),
    "ERR_METADATA_GET": (500, grpc.StatusCode.INTERNAL),
    "ERR_STATE_STORE_NOT_FOUND": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_STATE_STORE_NOT_CONFIGURED": (500, grpc.StatusCode.FAILED_PRECONDITION),
    "ERR_STATE_GET": (500, grpc.StatusCode.INTERNAL),
    "ERR_STATE_BULK_GET": (500, grpc.StatusCode.INTERNAL),
    "ERR_STATE_SAVE": (500, grpc.StatusCode.INTERNAL),
    "ERR_STATE_DELETE": (500, grpc.StatusCode.INTERNAL),
    "ERR_STATE_BULK_DELETE": (500, grpc.StatusCode.INTERNAL),
    "ERR_NOT_SUPPORTED_STATE_OPERATION": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_STATE_TRANSACTION": (500, grpc.StatusCode.INTERNAL),
    "ERR_STATE_STORE_NOT_SUPPORTED": (500, grpc.StatusCode.INTERNAL),
    "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_STATE_QUERY": (500, grpc.StatusCode.INTERNAL),
    "ERR_PUBSUB_EMPTY": (404, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_TOPIC_NAME_EMPTY": (404, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_PUBSUB_NOT_FOUND": (404, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_PUBSUB_NOT_CONFIGURED": (400, grpc.StatusCode.FAILED_PRECONDITION),
    "ERR_PUBSUB_FORBIDDEN": (403, grpc.StatusCode.PERMISSION_DENIED),
    "ERR_PUBSUB_PUBLISH_MESSAGE": (500, grpc.StatusCode.INTERNAL),
    "ERR_PUBSUB_REQUEST_METADATA": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_PUBSUB_CLOUD_EVENTS_SER": (500, grpc.StatusCode.INTERNAL),
    "ERR_PUBSUB_EVENTS_SER": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_PUBLISH_OUTBOX": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_RUNTIME_NOT_FOUND": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_INSTANCE_MISSING": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_ACTOR_INVOKE_METHOD": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_STATE_GET": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_STATE_TRANSACTION_SAVE": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_REMINDER_CREATE": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_REMINDER_GET": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_REMINDER_DELETE": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_REMINDER_NOT_FOUND": (404, grpc.StatusCode.NOT_FOUND),
    "ERR_ACTOR_REMINDER_ALREADY_EXISTS": (409, grpc.StatusCode.ALREADY_EXISTS),
    "ERR_ACTOR_REMINDER_NON_HOSTED": (403, grpc.StatusCode.PERMISSION_DENIED),
    "ERR_ACTOR_TIMER_CREATE": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_TIMER_DELETE": (500, grpc.StatusCode.INTERNAL),
    "ERR_ACTOR_TIMER_NOT_FOUND": (404, grpc.StatusCode.NOT_FOUND),
    "ERR_ACTOR_TYPE_RESERVED": (403, grpc.StatusCode.PERMISSION_DENIED),
    "ERR_ACTOR_NO_APP_CHANNEL": (400, grpc.StatusCode.UNAVAILABLE),
    "ERR_ACTOR_STACK_DEPTH": (500, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "ERR_ACTOR_NO_PLACEMENT": (400, grpc.StatusCode.UNAVAILABLE),
    "ERR_ACTOR_RUNTIME_CLOSED": (503, grpc.StatusCode.UNAVAILABLE),
    "ERR_ACTOR_NO_ADDRESS": (404, grpc.StatusCode.FAILED_PRECONDITION),
    "ERR_SECRET_STORES_NOT_CONFIGURED": (500, grpc.StatusCode.FAILED_PRECONDITION),
    # 401, not 400: what daprd answers (its docs say 400).
    "ERR_SECRET_STORE_NOT_FOUND": (401, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_PERMISSION_DENIED": (403, grpc.StatusCode.PERMISSION_DENIED),
    "ERR_SECRET_GET": (500, grpc.StatusCode.INTERNAL),
    "ERR_LOCK_STORE_NOT_CONFIGURED": (500, grpc.StatusCode.FAILED_PRECONDITION),
    "ERR_LOCK_STORE_NOT_FOUND": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_TRY_LOCK": (500, grpc.StatusCode.INTERNAL),
    "ERR_UNLOCK": (500, grpc.StatusCode.INTERNAL),
    "ERR_CONFIGURATION_STORE_NOT_CONFIGURED": (500, grpc.StatusCode.FAILED_PRECONDITION),
    "ERR_CONFIGURATION_STORE_NOT_FOUND": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_CONFIGURATION_GET": (500, grpc.StatusCode.INTERNAL),
    "ERR_CONFIGURATION_SUBSCRIBE": (500, grpc.StatusCode.INTERNAL),
    "ERR_CONFIGURATION_UNSUBSCRIBE": (500, grpc.StatusCode.INTERNAL),
    "ERR_APP_CHANNEL_NIL": (500, grpc.StatusCode.INTERNAL),
    "ERR_CONVERSATION_NOT_FOUND": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_CONVERSATION_INVALID_PARMS": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_CONVERSATION_MISSING_INPUTS": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_CONVERSATION_INVOKE": (500, grpc.StatusCode.INTERNAL),
    "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED": (500, grpc.StatusCode.INTERNAL),
    "ERR_CRYPTO_PROVIDER_NOT_FOUND": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "ERR_CRYPTO_KEY": (500, grpc.StatusCode.INTERNAL),
    "ERR_CRYPTO": (500, grpc.StatusCode.INTERNAL),
    "ERR_INVOKE_OUTPUT_BINDING": (500, grpc.StatusCode.INTERNAL),
    "DAPR_SCHEDULER_SCHEDULE_JOB": (500, grpc.StatusCode.INTERNAL),
    "DAPR_SCHEDULER_JOB_NAME": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "DAPR_SCHEDULER_JOB_NAME_EMPTY": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "DAPR_SCHEDULER_EMPTY": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "DAPR_SCHEDULER_SCHEDULE_EMPTY": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "DAPR_SCHEDULER_GET_JOB": (500, grpc.StatusCode.INTERNAL),
    "DAPR_SCHEDULER_LIST_JOBS": (500, grpc.StatusCode.INTERNAL),
    "DAPR_SCHEDULER_DELETE_JOB": (500, grpc.StatusCode.INTERNAL),
}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The rich-error details Dapr adds for some APIs (google.rpc.ErrorInfo and friends)."""

    reason: str
    metadata: dict[str, str] = field(default_factory=dict)
    resource_type: str = ""
    resource_name: str = ""
    field_violations: tuple[tuple[str, str], ...] = ()


class DaprError(Exception):
    """An API failure with Dapr's error code; the front doors render it."""

    def __init__(
        self,
        error_code: str,
        message: str,
        *,
        http_status: int | None = None,
        grpc_status: grpc.StatusCode | None = None,
        info: ErrorInfo | None = None,
    ) -> None:
        super().__init__(message)
        default_http, default_grpc = _STATUS.get(error_code, (500, grpc.StatusCode.INTERNAL))
        self.error_code = error_code
        self.message = message
        self.http_status = http_status if http_status is not None else default_http
        self.grpc_status = grpc_status if grpc_status is not None else default_grpc
        self.info = info

    def to_json(self) -> dict[str, Any]:
        """Dapr's HTTP error body: ``errorCode``, ``message`` and, for rich errors, ``details``."""
        body: dict[str, Any] = {"errorCode": self.error_code, "message": self.message}
        if self.info is not None:
            details: list[dict[str, Any]] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "domain": "dapr.io",
                    "reason": self.info.reason,
                    "metadata": dict(self.info.metadata),
                }
            ]
            if self.info.resource_type:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                        "resource_type": self.info.resource_type,
                        "resource_name": self.info.resource_name,
                        "owner": "",
                        "description": "",
                    }
                )
            if self.info.field_violations:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "field_violations": [
                            {"field": f, "description": d} for f, d in self.info.field_violations
                        ],
                    }
                )
            body["details"] = details
        return body

    def __repr__(self) -> str:
        return f"DaprError({self.error_code!r}, {self.message!r}, http={self.http_status})"


# gRPC carries the message twice in trailers (grpc-message and grpc-status-details-bin),
# and clients refuse trailers over ~8 KiB with RESOURCE_EXHAUSTED: an echoed 10k-character
# store name would hide the real answer. The start of the input is enough to recognise it.
MAX_GRPC_MESSAGE_CHARS = 1024


def clip(text: str, limit: int = MAX_GRPC_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def to_grpc_status(err: DaprError) -> grpc.Status:
    """The gRPC twin of :meth:`DaprError.to_json`: code, message and rich details."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    details: list[any_pb2.Any] = []
    if err.info is not None:
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(
                reason=err.info.reason, domain="dapr.io", metadata=dict(err.info.metadata)
            )
        )
        details.append(info)
        if err.info.resource_type:
            res = any_pb2.Any()
            res.Pack(
                error_details_pb2.ResourceInfo(
                    resource_type=err.info.resource_type, resource_name=err.info.resource_name
                )
            )
            details.append(res)
        if err.info.field_violations:
            bad = any_pb2.Any()
            bad.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in err.info.field_violations
                    ]
                )
            )
            details.append(bad)
    status = status_pb2.Status(
        code=err.grpc_status.value[0], message=clip(err.message), details=details
    )
    return rpc_status.to_status(status)
