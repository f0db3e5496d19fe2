"""Run under `tandem run`: the official Dapr SDK drives the whole state API over gRPC.

    python sdk_state.py [STORE] [EXPECTED_COMPONENT_TYPE]

STORE defaults to ``statestore``. Prints one ``ok: ...`` line per check that holds and a
``FAIL: ...`` line for the first one that does not, then exits 1; exits 0 when every
check holds. Keys carry a per-run suffix, so the app can run again against the same store.
"""

from __future__ import annotations

import os
import sys
import uuid

import grpc
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, Consistency, StateOptions

STORE = sys.argv[1] if len(sys.argv) > 1 else "statestore"
EXPECTED_TYPE = sys.argv[2] if len(sys.argv) > 2 else None
RUN = uuid.uuid4().hex[:8]
FIRST_WRITE = StateOptions(concurrency=Concurrency.first_write, consistency=Consistency.strong)


class CheckFailed(Exception):
    pass


def check(condition: bool, what: str, detail: object = "") -> None:
    if not condition:
        raise CheckFailed(f"{what} {detail}".rstrip())
    print(f"ok: {what}", flush=True)


def key(name: str) -> str:
    return f"{name}-{RUN}"


def refused(call, *args, **kwargs) -> DaprGrpcError | None:
    """The SDK's error when ``call`` is refused, else None."""
    try:
        call(*args, **kwargs)
    except DaprGrpcError as err:
        return err
    return None


def run(d: DaprClient) -> None:
    md = d.get_metadata()
    check(md.application_id == os.environ["APP_ID"], "get_metadata reports this app's id")
    types = {c.name: c.type for c in md.registered_components}
    check(STORE in types, f"get_metadata lists the state store {STORE!r}", types)
    if EXPECTED_TYPE:
        check(types[STORE] == EXPECTED_TYPE, f"{STORE!r} is a {EXPECTED_TYPE}", types[STORE])

    # save_state / get_state, etags
    k1 = key("k1")
    d.save_state(STORE, k1, "v1")
    first = d.get_state(STORE, k1)
    check(first.data == b"v1", "get_state returns the saved value", first.data)
    check(bool(first.etag), "get_state returns an etag", repr(first.etag))

    d.save_state(STORE, k1, "v2", etag=first.etag, options=FIRST_WRITE)
    second = d.get_state(STORE, k1)
    check(second.data == b"v2", "save_state with the current etag and first-write succeeds")
    check(second.etag != first.etag, "the etag changes on every write", (first.etag, second.etag))

    err = refused(d.save_state, STORE, k1, "v3", etag=first.etag, options=FIRST_WRITE)
    check(err is not None, "save_state with a stale etag and first-write is refused")
    assert err is not None
    check(err.code() == grpc.StatusCode.ABORTED, "the refusal is ABORTED", err.code())
    after = d.get_state(STORE, k1)
    check(
        (after.data, after.etag) == (b"v2", second.etag),
        "a refused save changes neither value nor etag",
        (after.data, after.etag),
    )

    missing = d.get_state(STORE, key("never-saved"))
    check(missing.data == b"" and missing.etag == "", "get_state of a missing key is empty")

    # get_bulk_state: request order, contents, missing keys present without data
    k2 = key("k2")
    d.save_state(STORE, k2, b'{"n": 2}')
    wanted = [k2, key("nope"), k1]
    bulk = d.get_bulk_state(STORE, wanted, parallelism=2).items
    check([i.key for i in bulk] == wanted, "get_bulk_state keeps the request order")
    got = {i.key: (i.data, i.etag) for i in bulk}
    check(got[k1] == (b"v2", second.etag), "get_bulk_state returns value and etag", got[k1])
    check(got[k2][0] == b'{"n": 2}' and got[k2][1], "get_bulk_state returns JSON bytes verbatim")
    check(got[key("nope")] == (b"", ""), "get_bulk_state returns a missing key with no data")

    # execute_state_transaction: applied together...
    t1, t2 = key("t1"), key("t2")
    d.execute_state_transaction(
        STORE,
        [
            TransactionalStateOperation(key=t1, data="one"),
            TransactionalStateOperation(key=t2, data="two"),
            TransactionalStateOperation(key=k2, operation_type=TransactionOperationType.delete),
        ],
    )
    check(d.get_state(STORE, t1).data == b"one", "a transaction's first upsert is applied")
    check(d.get_state(STORE, t2).data == b"two", "a transaction's second upsert is applied")
    check(d.get_state(STORE, k2).data == b"", "a transaction's delete is applied")

    # ... or not at all
    t2_etag = d.get_state(STORE, t2).etag
    err = refused(
        d.execute_state_transaction,
        STORE,
        [
            TransactionalStateOperation(key=t1, data="changed"),
            TransactionalStateOperation(key=key("t3"), data="new"),
            TransactionalStateOperation(
                key=t2, etag=first.etag, operation_type=TransactionOperationType.delete
            ),
        ],
    )
    check(err is not None, "a transaction with a stale etag is refused")
    check(d.get_state(STORE, t1).data == b"one", "a refused transaction leaves earlier upserts")
    check(d.get_state(STORE, key("t3")).data == b"", "a refused transaction creates nothing")
    t2_now = d.get_state(STORE, t2)
    check(
        (t2_now.data, t2_now.etag) == (b"two", t2_etag),
        "a refused transaction deletes nothing",
    )

    # delete_state with etags
    err = refused(d.delete_state, STORE, k1, etag=first.etag, options=FIRST_WRITE)
    check(err is not None, "delete_state with a stale etag is refused")
    assert err is not None
    check(err.code() == grpc.StatusCode.ABORTED, "the refusal is ABORTED", err.code())
    check(d.get_state(STORE, k1).data == b"v2", "a refused delete keeps the value")
    d.delete_state(STORE, k1, etag=second.etag, options=FIRST_WRITE)
    check(d.get_state(STORE, k1).data == b"", "delete_state with the current etag deletes")
    d.delete_state(STORE, k1)
    check(True, "deleting a missing key without an etag succeeds")


def main() -> int:
    with DaprClient() as d:  # the SDK waits for /v1.0/healthz/outbound first
        try:
            run(d)
        except CheckFailed as failed:
            print(f"FAIL: {failed}", flush=True)
            return 1
        except DaprGrpcError as err:
            print(f"FAIL: unexpected {err.code()}: {err.details()}", flush=True)
            return 1
    print("all state checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
