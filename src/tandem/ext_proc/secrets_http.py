"""The secrets API over HTTP: ``GET /v1.0/secrets/{store}/{name}`` and ``/bulk``."""

from __future__ import annotations

from tandem.blocks.secrets.service import SecretsService
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router


def register(router: Router, service: SecretsService) -> None:
    async def get(req: ApiRequest) -> ApiResponse:
        data = await service.get(req.params["store"], req.params["key"], req.query_metadata())
        return ApiResponse.json(data)

    async def bulk(req: ApiRequest) -> ApiResponse:
        return ApiResponse.json(await service.bulk(req.params["store"], req.query_metadata()))

    router.add("GET", "/v1.0/secrets/{store}/bulk", bulk)
    router.add("GET", "/v1.0/secrets/{store}/{key}", get)
