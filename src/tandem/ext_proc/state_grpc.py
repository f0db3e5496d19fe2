"""The state RPCs of ``dapr.proto.runtime.v1.Dapr``: proto in, proto out.

The Dapr servicer delegates each RPC here; these functions only translate messages to the
domain requests of :class:`~tandem.blocks.state.service.StateService` and back. They raise
:class:`DaprError`, which the servicer turns into a gRPC status. Values are bytes on this
API and are stored exactly as sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2
from google.protobuf import empty_pb2

from tandem.blocks.errors import DaprError
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import (
    Concurrency,
    Consistency,
    DeleteRequest,
    SetRequest,
    TransactionOperation,
)

_Options = common_pb2.StateOptions
_CONCURRENCY = {
    _Options.CONCURRENCY_FIRST_WRITE: Concurrency.FIRST_WRITE,
    _Options.CONCURRENCY_LAST_WRITE: Concurrency.LAST_WRITE,
}
_CONSISTENCY = {
    _Options.CONSISTENCY_EVENTUAL: Consistency.EVENTUAL,
    _Options.CONSISTENCY_STRONG: Consistency.STRONG,
}


async def get_state(
    service: StateService, request: state_pb2.GetStateRequest
) -> state_pb2.GetStateResponse:
    resp = await service.get(
        request.store_name,
        request.key,
        metadata=dict(request.metadata),
        consistency=_consistency(request.consistency),
    )
    if resp.data is None:
        return state_pb2.GetStateResponse()
    return state_pb2.GetStateResponse(
        data=resp.data, etag=resp.etag or "", metadata=dict(resp.metadata)
    )


async def get_bulk_state(
    service: StateService, request: state_pb2.GetBulkStateRequest
) -> state_pb2.GetBulkStateResponse:
    items = await service.bulk_get(
        request.store_name,
        list(request.keys),
        parallelism=request.parallelism,
        metadata=dict(request.metadata),
    )
    out = state_pb2.GetBulkStateResponse()
    for item in items:
        resp = item.response
        if item.error or resp is None or resp.data is None:
            out.items.add(key=item.key, error=item.error)
        else:
            out.items.add(
                key=item.key, data=resp.data, etag=resp.etag or "", metadata=dict(resp.metadata)
            )
    return out


async def save_state(service: StateService, request: state_pb2.SaveStateRequest) -> empty_pb2.Empty:
    service.component(request.store_name)
    items = [_set_request(s) for s in request.states]
    if items:
        await service.save(request.store_name, items)
    return empty_pb2.Empty()


async def delete_state(
    service: StateService, request: state_pb2.DeleteStateRequest
) -> empty_pb2.Empty:
    concurrency, consistency = _options(request.options if request.HasField("options") else None)
    await service.delete(
        request.store_name,
        DeleteRequest(
            key=request.key,
            etag=_etag(request.etag if request.HasField("etag") else None),
            metadata=dict(request.metadata),
            concurrency=concurrency,
            consistency=consistency,
        ),
    )
    return empty_pb2.Empty()


async def delete_bulk_state(
    service: StateService, request: state_pb2.DeleteBulkStateRequest
) -> empty_pb2.Empty:
    service.component(request.store_name)
    reqs = [_delete_request(s) for s in request.states]
    if reqs:
        await service.delete_bulk(request.store_name, reqs)
    return empty_pb2.Empty()


async def execute_state_transaction(
    service: StateService, request: state_pb2.ExecuteStateTransactionRequest
) -> empty_pb2.Empty:
    service.transactional(request.storeName)
    ops: list[TransactionOperation] = []
    for op in request.operations:
        if op.operationType == "upsert":
            ops.append(_set_request(op.request))
        elif op.operationType == "delete":
            ops.append(_delete_request(op.request))
        else:
            raise DaprError(
                "ERR_NOT_SUPPORTED_STATE_OPERATION",
                f"operation type {op.operationType} not supported",
            )
    if ops:
        await service.transact(request.storeName, ops, dict(request.metadata))
    return empty_pb2.Empty()


async def query_state_alpha1(
    service: StateService, request: state_pb2.QueryStateRequest
) -> state_pb2.QueryStateResponse:
    result = await service.query(request.store_name, request.query, dict(request.metadata))
    return state_pb2.QueryStateResponse(
        results=[
            state_pb2.QueryStateItem(key=i.key, data=i.data, etag=i.etag or "")
            for i in result.items
        ],
        token=result.token,
        metadata=dict(result.metadata or {}),
    )


def _set_request(item: common_pb2.StateItem) -> SetRequest:
    concurrency, consistency = _options(item.options if item.HasField("options") else None)
    return SetRequest(
        key=item.key,
        value=item.value,
        etag=_etag(item.etag if item.HasField("etag") else None),
        metadata=dict(item.metadata),
        concurrency=concurrency,
        consistency=consistency,
    )


def _delete_request(item: common_pb2.StateItem) -> DeleteRequest:
    concurrency, consistency = _options(item.options if item.HasField("options") else None)
    return DeleteRequest(
        key=item.key,
        etag=_etag(item.etag if item.HasField("etag") else None),
        metadata=dict(item.metadata),
        concurrency=concurrency,
        consistency=consistency,
    )


def _etag(etag: common_pb2.Etag | None) -> str | None:
    # An Etag message with an empty value is "no etag", as in Dapr.
    return etag.value if etag is not None and etag.value else None


def _options(
    options: common_pb2.StateOptions | None,
) -> tuple[Concurrency | None, Consistency | None]:
    if options is None:
        return None, None
    return _concurrency(options.concurrency), _consistency(options.consistency)


def _concurrency(value: int) -> Concurrency | None:
    if value == _Options.CONCURRENCY_UNSPECIFIED:
        return None
    found = _CONCURRENCY.get(value)  # type: ignore[call-overload]
    if found is None:
        raise DaprError("ERR_MALFORMED_REQUEST", f"invalid concurrency value {value}")
    return found


def _consistency(value: int) -> Consistency | None:
    if value == _Options.CONSISTENCY_UNSPECIFIED:
        return None
    found = _CONSISTENCY.get(value)  # type: ignore[call-overload]
    if found is None:
        raise DaprError("ERR_MALFORMED_REQUEST", f"invalid consistency value {value}")
    return found


def rpcs(service: StateService) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """The Dapr gRPC methods this block serves, by RPC name, bound to ``service``."""
    return {
        "GetState": lambda r: get_state(service, r),
        "GetBulkState": lambda r: get_bulk_state(service, r),
        "SaveState": lambda r: save_state(service, r),
        "DeleteState": lambda r: delete_state(service, r),
        "DeleteBulkState": lambda r: delete_bulk_state(service, r),
        "ExecuteStateTransaction": lambda r: execute_state_transaction(service, r),
        "QueryStateAlpha1": lambda r: query_state_alpha1(service, r),
    }
