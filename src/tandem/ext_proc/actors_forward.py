"""Sends an actor call to its owner's sidecar through this sidecar's Envoy
(listener ``actor_forward``, see ``tandem.xds.translate.actors``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from tandem.blocks.actors.app_http import ACTOR_CALL_HEADERS
from tandem.blocks.app_channel import AppResponse
from tandem.blocks.errors import DaprError
from tandem.ext_proc.actors_http import NOT_OWNER_HEADER, VERSION_HEADER
from tandem.placement.table import Version
from tandem.xds.contract import ACTOR_CLUSTER_HEADER as CLUSTER_HEADER
from tandem.xds.contract import ACTOR_INBOUND_PREFIX as INBOUND_PREFIX
from tandem.xds.contract import actor_host_cluster as host_cluster_name

if TYPE_CHECKING:
    import aiohttp


class EnvoyForwarder:
    def __init__(self, socket_path: str, *, timeout: float = 60.0) -> None:
        self._socket_path = socket_path
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp  # ~10 MB: loaded by the first forwarded call

            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self._socket_path, limit=256),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def forward(
        self,
        host: str,
        version: Version,
        actor_type: str,
        actor_id: str,
        method: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> AppResponse | None:
        path = INBOUND_PREFIX + "/".join(
            quote(p, safe="") for p in (actor_type, actor_id, "method", method)
        )
        sent = {k: v for k, v in headers.items() if k.lower() in ACTOR_CALL_HEADERS}
        sent[CLUSTER_HEADER] = host_cluster_name(host)
        sent[VERSION_HEADER] = str(version)
        import aiohttp

        try:
            async with self._client().put("http://actors" + path, data=body, headers=sent) as resp:
                data = await resp.read()
                if resp.headers.get(NOT_OWNER_HEADER) or resp.status == 503:
                    return None  # not placed there now, or the owner is unreachable: retry
                if resp.status >= 400 and resp.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    _raise_dapr_error(resp.status, data)
                return AppResponse(resp.status, data, dict(resp.headers))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DaprError(
                "ERR_ACTOR_INVOKE_METHOD", f"error forwarding the actor call to {host}: {exc}"
            ) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _raise_dapr_error(status: int, data: bytes) -> None:
    """The owner answered with a Dapr error of its own: pass it on as it is."""
    import orjson

    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if isinstance(body, dict) and isinstance(body.get("errorCode"), str):
        raise DaprError(body["errorCode"], str(body.get("message", "")), http_status=status)
