"""The publish API over HTTP: Dapr's routes, parsed into service calls, rendered back.

Every rule (scopes, envelope, errors) lives in
:class:`~tandem.blocks.pubsub.service.PubSubService`; this module only reads the wire.
"""

from __future__ import annotations

from typing import Any

import orjson

from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.blocks.pubsub.cloudevents import CLOUDEVENT_CONTENT_TYPE, media_type
from tandem.blocks.pubsub.service import BulkEntry, PublishRequest, PubSubService
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

_JSON_TYPES = ("application/json", CLOUDEVENT_CONTENT_TYPE)


def register(router: Router, service: PubSubService) -> None:
    api = _PubSubHttp(service)
    methods = ("POST", "PUT")
    router.add(methods, "/v1.0/publish/{pubsub}/{topic...}", api.publish)
    # Catch-alls for an empty pubsub or topic segment, which Dapr answers with 404s.
    router.add(methods, "/v1.0/publish/{rest...}", api.publish_incomplete)
    router.add(methods, "/v1.0/publish", api.publish_incomplete)
    for version in ("v1.0-alpha1", "v1.0"):
        router.add(methods, f"/{version}/publish/bulk/{{pubsub}}/{{topic...}}", api.bulk)
        router.add(methods, f"/{version}/publish/bulk/{{rest...}}", api.publish_incomplete)
        router.add(methods, f"/{version}/publish/bulk", api.publish_incomplete)


class _PubSubHttp:
    def __init__(self, service: PubSubService) -> None:
        self._service = service

    async def publish(self, req: ApiRequest) -> ApiResponse:
        pubsub, topic = req.params["pubsub"], req.params["topic"]
        self._service.target(pubsub, topic)
        await self._service.publish(
            PublishRequest(
                pubsub=pubsub,
                topic=topic,
                data=req.body,
                content_type=req.headers.get("content-type", ""),
                metadata=req.query_metadata(),
                traceparent=req.headers.get("traceparent", ""),
                tracestate=req.headers.get("tracestate", ""),
            )
        )
        return ApiResponse.empty(204)

    async def publish_incomplete(self, req: ApiRequest) -> ApiResponse:
        parts = req.params.get("rest", "").split("/", 1)
        pubsub = parts[0]
        topic = parts[1] if len(parts) > 1 else ""
        self._service.target(pubsub, topic)  # raises the matching 404
        raise DaprError("ERR_TOPIC_NAME_EMPTY", f"topic is empty in pubsub {pubsub}")

    async def bulk(self, req: ApiRequest) -> ApiResponse:
        pubsub, topic = req.params["pubsub"], req.params["topic"]
        self._service.target(pubsub, topic)
        entries = _bulk_entries(req.body, pubsub)
        failed = await self._service.bulk_publish(
            pubsub,
            topic,
            entries,
            req.query_metadata(),
            traceparent=req.headers.get("traceparent", ""),
            tracestate=req.headers.get("tracestate", ""),
        )
        if not failed:
            return ApiResponse.empty(204)
        body = {
            "failedEntries": [{"entryId": f.entry_id, "error": f.error} for f in failed],
            "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
        }
        return ApiResponse.json(body, status=500)


def _events_error(pubsub: str, message: str) -> DaprError:
    return DaprError(
        "ERR_PUBSUB_EVENTS_SER",
        message,
        info=ErrorInfo(
            reason="DAPR_PUBSUB_UNMARSHAL_EVENTS", resource_type="pubsub", resource_name=pubsub
        ),
    )


def _bulk_entries(body: bytes, pubsub: str) -> list[BulkEntry]:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _events_error(pubsub, f"error when unmarshaling the request body: {exc}") from None
    if not isinstance(raw, list):
        raise _events_error(pubsub, "the request body must be a JSON array of entries")
    entries = []
    for item in raw:
        if not isinstance(item, dict):
            raise _events_error(pubsub, "every entry must be a JSON object")
        content_type = str(item.get("contentType") or "")
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _events_error(pubsub, "entry metadata must be an object of strings")
        entries.append(
            BulkEntry(
                entry_id=str(item.get("entryId") or ""),
                data=_event_bytes(item.get("event"), content_type),
                content_type=content_type,
                metadata={str(k): str(v) for k, v in metadata.items()},
            )
        )
    return entries


def _event_bytes(event: Any, content_type: str) -> bytes:
    """A JSON content type keeps the event as JSON; otherwise a string is sent as text."""
    if isinstance(event, str) and media_type(content_type) not in _JSON_TYPES:
        return event.encode()
    return orjson.dumps(event)
