"""The configuration RPCs of ``dapr.proto.runtime.v1.Dapr``, stable and Alpha1 alike:
GetConfiguration, SubscribeConfiguration (a server stream: the id first, then each
change) and UnsubscribeConfiguration."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2 as pb

from tandem.blocks.configuration.service import ConfigurationService
from tandem.blocks.configuration.store import Items
from tandem.ext_proc.grpc_api import Rpc, StreamRpc


def _items(items: Items) -> dict[str, common_pb2.ConfigurationItem]:
    return {
        key: common_pb2.ConfigurationItem(
            value=item.value, version=item.version, metadata=dict(item.metadata)
        )
        for key, item in items.items()
    }


async def get(service: ConfigurationService, r: pb.GetConfigurationRequest) -> Any:
    items = await service.get(r.store_name, list(r.keys), dict(r.metadata))
    return pb.GetConfigurationResponse(items=_items(items))


def subscribe(service: ConfigurationService) -> StreamRpc:
    async def handler(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        r = await anext(requests)
        sub = await service.subscribe(r.store_name, list(r.keys), dict(r.metadata))
        try:
            yield pb.SubscribeConfigurationResponse(id=sub.id)
            async for items in sub.changes():
                yield pb.SubscribeConfigurationResponse(id=sub.id, items=_items(items))
        finally:
            # The client went away or unsubscribed: the watch ends with the stream.
            await service.end_quietly(sub.id)

    return StreamRpc(handler)


async def unsubscribe(service: ConfigurationService, r: pb.UnsubscribeConfigurationRequest) -> Any:
    await service.unsubscribe(r.store_name or None, r.id)
    return pb.UnsubscribeConfigurationResponse(ok=True)


def rpcs(service: ConfigurationService) -> dict[str, Rpc]:
    out: dict[str, Rpc] = {}
    for suffix in ("", "Alpha1"):
        out[f"GetConfiguration{suffix}"] = lambda r: get(service, r)
        out[f"SubscribeConfiguration{suffix}"] = subscribe(service)
        out[f"UnsubscribeConfiguration{suffix}"] = lambda r: unsubscribe(service, r)
    return out
