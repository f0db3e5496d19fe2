"""order-processor, state with the SDK: save, get and delete each order, then bulk save and
get, optimistic concurrency with ETags, and a transaction. Exits non-zero on any surprise."""

import json

import grpc
from dapr.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import StateItem

STORE = "statestore"

with DaprClient() as client:
    for order_id in range(1, 4):
        order = {"orderId": order_id}
        key = f"order_{order_id}"
        client.save_state(STORE, key, json.dumps(order))
        print("Saving Order:", json.dumps(order), flush=True)
        got = client.get_state(STORE, key)
        assert json.loads(got.data) == order, got.data
        print("Getting Order:", json.dumps(json.loads(got.data)), flush=True)
        client.delete_state(STORE, key)
        assert client.get_state(STORE, key).data == b""
        print("Deleted Order:", key, flush=True)

    client.save_bulk_state(
        STORE,
        [StateItem(key="cart_1", value="apples"), StateItem(key="cart_2", value="pears")],
    )
    items = client.get_bulk_state(STORE, keys=["cart_1", "cart_2", "cart_none"]).items
    found = {i.key: i.data.decode() for i in items}
    assert found == {"cart_1": "apples", "cart_2": "pears", "cart_none": ""}, found
    print("Bulk get:", json.dumps(found, sort_keys=True), flush=True)

    first = client.get_state(STORE, "cart_1")
    client.save_state(STORE, "cart_1", "plums", etag=first.etag)
    try:
        client.save_state(STORE, "cart_1", "figs", etag=first.etag)
    except grpc.RpcError as exc:
        print("Stale ETag refused:", exc.code().name, flush=True)
    else:
        raise AssertionError("a stale ETag was accepted")
    assert client.get_state(STORE, "cart_1").data == b"plums"

    client.execute_state_transaction(
        STORE,
        operations=[
            TransactionalStateOperation(
                operation_type=TransactionOperationType.upsert, key="cart_3", data="kiwis"
            ),
            TransactionalStateOperation(
                operation_type=TransactionOperationType.delete, key="cart_2"
            ),
        ],
    )
    assert client.get_state(STORE, "cart_3").data == b"kiwis"
    assert client.get_state(STORE, "cart_2").data == b""
    print("Transaction committed", flush=True)

print("state sdk: all checks passed", flush=True)
