"""Transport-neutral request and response of the Dapr HTTP API, as the ext_proc door sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

import orjson

from tandem.blocks.errors import DaprError

JSON = b"application/json"


@dataclass(slots=True)
class ApiRequest:
    """One Dapr API call: method, path (without query), raw query, lower-cased headers, body."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # filled by the router
    app_id: str = ""

    def query_values(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True) if self.query else {}

    def query_metadata(self) -> dict[str, str]:
        """Dapr's ``metadata.<k>=<v>`` query parameters as a plain dict."""
        if not self.query:
            return {}
        return {
            k[len("metadata.") :]: v[-1]
            for k, v in self.query_values().items()
            if k.startswith("metadata.")
        }

    def json(self) -> object:
        """The body parsed as JSON, or ``ERR_MALFORMED_REQUEST``."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise DaprError(
                "ERR_MALFORMED_REQUEST", f"failed to parse request body: {exc}"
            ) from exc


@dataclass(slots=True)
class ApiResponse:
    status: int = 200
    body: bytes = b""
    content_type: bytes = JSON
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def json(cls, value: object, status: int = 200) -> ApiResponse:
        return cls(status=status, body=orjson.dumps(value))

    @classmethod
    def empty(cls, status: int = 204) -> ApiResponse:
        return cls(status=status, body=b"", content_type=b"")

    @classmethod
    def error(cls, err: DaprError) -> ApiResponse:
        return cls(status=err.http_status, body=orjson.dumps(err.to_json()))


Handler = Callable[[ApiRequest], Awaitable[ApiResponse]]


def path_segment(value: str) -> str:
    """A URL path parameter as the handler sees it (percent-decoded, as Dapr's router does)."""
    return unquote(value) if "%" in value else value
