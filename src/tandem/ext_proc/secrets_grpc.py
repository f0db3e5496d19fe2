"""The secrets RPCs of ``dapr.proto.runtime.v1.Dapr``: GetSecret and GetBulkSecret."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dapr.proto.runtime.v1 import secret_pb2

from tandem.blocks.secrets.service import SecretsService


async def get_secret(
    service: SecretsService, request: secret_pb2.GetSecretRequest
) -> secret_pb2.GetSecretResponse:
    data = await service.get(request.store_name, request.key, dict(request.metadata))
    return secret_pb2.GetSecretResponse(data=data)


async def get_bulk_secret(
    service: SecretsService, request: secret_pb2.GetBulkSecretRequest
) -> secret_pb2.GetBulkSecretResponse:
    found = await service.bulk(request.store_name, dict(request.metadata))
    out = secret_pb2.GetBulkSecretResponse()
    for name, values in found.items():
        out.data[name].secrets.update(values)
    return out


def rpcs(service: SecretsService) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    return {
        "GetSecret": lambda r: get_secret(service, r),
        "GetBulkSecret": lambda r: get_bulk_secret(service, r),
    }
