"""Run under `tandem run`: the official Dapr SDK drives the whole state API over gRPC.

    python sdk_state.py [STORE] [EXPECTED_COMPONENT_TYPE] [--query supported|unsupported]

STORE defaults to ``statestore``. Prints one ``ok: ...`` line per check that holds and a
``FAIL: ...`` line for the first one that does not, then exits 1; exits 0 when every
check holds. Keys carry a per-run suffix, so the app can run again against the same store.

``--query`` also checks the query API: ``supported`` runs equality, IN, sorted and paged
queries (scoped to this run's documents by a ``run`` field, since a query sees every key
of the app); ``unsupported`` expects the SDK to get Dapr's "does not support querying"
error. Without it the query API is not exercised. No ``ok:`` line names the store's type:
the lines before the ``-- query API ... --`` marker are the same for every store, those
after it the same for every store with the same capability.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
import warnings

import grpc
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, Consistency, StateItem, StateOptions

_args = argparse.ArgumentParser()
_args.add_argument("store", nargs="?", default="statestore")
_args.add_argument("expected_type", nargs="?")
_args.add_argument("--query", choices=("supported", "unsupported"))
ARGS = _args.parse_args()
STORE: str = ARGS.store
EXPECTED_TYPE: str | None = ARGS.expected_type
RUN = uuid.uuid4().hex[:8]
FIRST_WRITE = StateOptions(concurrency=Concurrency.first_write, consistency=Consistency.strong)
# save_bulk_state copies StateItem.options into the request as is, so it needs the proto
# message where save_state takes (and converts) the SDK's StateOptions (dapr 1.19).
FIRST_WRITE_PROTO = FIRST_WRITE.get_proto()


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
        check(types[STORE] == EXPECTED_TYPE, "the store has the expected type", types[STORE])

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
    check(
        got[k2][0] == b'{"n": 2}' and bool(got[k2][1]), "get_bulk_state returns JSON bytes verbatim"
    )
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

    # ... or not at all. t2's own earlier etag is the stale one (etags are per key: another
    # key's etag may well equal t2's current one, as in Dapr's Redis store).
    t2_stale = d.get_state(STORE, t2).etag
    d.save_state(STORE, t2, "two")
    t2_etag = d.get_state(STORE, t2).etag
    err = refused(
        d.execute_state_transaction,
        STORE,
        [
            TransactionalStateOperation(key=t1, data="changed"),
            TransactionalStateOperation(key=key("t3"), data="new"),
            TransactionalStateOperation(
                key=t2, etag=t2_stale, operation_type=TransactionOperationType.delete
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

    bulk_save(d)
    if ARGS.query:
        # Everything above is the same for every store; what follows depends on QUERY_API.
        print(f"-- query API {ARGS.query} --", flush=True)
        caps = next(
            c.capabilities for c in d.get_metadata().registered_components if c.name == STORE
        )
        check(
            ("QUERY_API" in caps) == (ARGS.query == "supported"),
            f"get_metadata's capabilities say querying is {ARGS.query}",
            caps,
        )
        if ARGS.query == "supported":
            query_supported(d)
        else:
            query_unsupported(d)


def bulk_save(d: DaprClient) -> None:
    b1, b2, b3 = key("b1"), key("b2"), key("b3")
    d.save_bulk_state(STORE, [StateItem(b1, "one"), StateItem(b2, b'{"n": 2}')])
    got = {i.key: i for i in d.get_bulk_state(STORE, [b1, b2]).items}
    check(
        (got[b1].data, got[b2].data) == (b"one", b'{"n": 2}'),
        "save_bulk_state saves every item",
        (got[b1].data, got[b2].data),
    )
    d.save_bulk_state(
        STORE,
        [
            StateItem(b1, "one'", etag=got[b1].etag, options=FIRST_WRITE_PROTO),
            StateItem(b2, b'{"n": 3}', etag=got[b2].etag),
        ],
    )
    now = {i.key: i for i in d.get_bulk_state(STORE, [b1, b2]).items}
    check(
        (now[b1].data, now[b2].data) == (b"one'", b'{"n": 3}'),
        "save_bulk_state with the current etags saves every item",
    )
    check(
        now[b1].etag != got[b1].etag and now[b2].etag != got[b2].etag,
        "save_bulk_state gives every saved item a new etag",
    )

    err = refused(
        d.save_bulk_state,
        STORE,
        [StateItem(b1, "stale", etag=got[b1].etag, options=FIRST_WRITE_PROTO)],
    )
    check(err is not None, "save_bulk_state with a stale etag and first-write is refused")
    assert err is not None
    check(err.code() == grpc.StatusCode.ABORTED, "the bulk refusal is ABORTED", err.code())
    after = d.get_state(STORE, b1)
    check(
        (after.data, after.etag) == (b"one'", now[b1].etag),
        "a refused bulk save keeps the stored value and etag",
    )

    d.save_bulk_state(STORE, [StateItem(b3, "created", options=FIRST_WRITE_PROTO)])
    check(d.get_state(STORE, b3).data == b"created", "first-write without an etag creates a key")
    err = refused(d.save_bulk_state, STORE, [StateItem(b3, "again", options=FIRST_WRITE_PROTO)])
    check(
        err is not None and err.code() == grpc.StatusCode.ABORTED,
        "first-write without an etag on an existing key is refused with ABORTED",
        err and err.code(),
    )
    check(d.get_state(STORE, b3).data == b"created", "the refused first-write changes nothing")


# Query documents: key suffix -> value; every one carries this run's id in "run".
PEOPLE = {
    "p1": {"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA"},
    "p2": {"person": {"org": "Hardware", "id": 1028}, "city": "Portland", "state": "OR"},
    "p3": {"person": {"org": "Finance", "id": 1071}, "city": "Sacramento", "state": "CA"},
    "p4": {"person": {"org": "Dev Ops", "id": 1042}, "city": "Spokane", "state": "WA"},
    "p5": {"person": {"org": "Hardware", "id": 1007}, "city": "Los Angeles", "state": "CA"},
    "p6": {"person": {"org": "Finance", "id": 1094}, "city": "Eugene", "state": "OR"},
    "p7": {"person": {"org": "Dev Ops", "id": 1015}, "city": "San Francisco", "state": "CA"},
}


def query(d: DaprClient, filter_: dict | None, sort: list[tuple[str, str]], **page: object):
    """``query_state`` with this run's documents only; the SDK takes the query as JSON text."""
    run_only: dict = {"EQ": {"run": RUN}}
    doc: dict = {"filter": {"AND": [run_only, filter_]} if filter_ else run_only}
    if sort:
        doc["sort"] = [{"key": k, "order": o} for k, o in sort]
    if page:
        doc["page"] = page
    return d.query_state(STORE, json.dumps(doc))


def names(resp) -> list[str]:
    """Result keys without the run suffix (``p3-1a2b3c4d`` -> ``p3``)."""
    return [r.key.removesuffix(f"-{RUN}") for r in resp.results]


def query_supported(d: DaprClient) -> None:
    docs = {key(n): {**v, "run": RUN} for n, v in PEOPLE.items()}
    d.save_bulk_state(STORE, [StateItem(k, json.dumps(v)) for k, v in docs.items()])

    ca = query(d, {"EQ": {"state": "CA"}}, [("city", "ASC")])
    check(
        names(ca) == ["p5", "p3", "p7"],
        "query_state EQ + sort returns the matches in order",
        names(ca),
    )
    first = ca.results[0]
    check(json.loads(first.value) == docs[first.key], "query_state returns each stored document")
    check(
        first.etag == d.get_state(STORE, first.key).etag,
        "query_state returns each item's current etag",
    )
    check(ca.token == "", "an unpaged query_state returns no token", repr(ca.token))

    nested = query(d, {"EQ": {"person.org": "Dev Ops"}}, [("person.id", "DESC")])
    check(
        names(nested) == ["p4", "p1", "p7"],
        "query_state EQ on a nested field, sort DESC",
        names(nested),
    )

    west = query(d, {"IN": {"state": ["WA", "OR"]}}, [("state", "ASC"), ("person.id", "DESC")])
    check(
        names(west) == ["p6", "p2", "p4", "p1"],
        "query_state IN with two sort keys returns the matches in order",
        names(west),
    )

    none = query(d, {"IN": {"state": ["NY"]}}, [])
    check(names(none) == [] and none.token == "", "query_state with no match is empty")

    pages: list[list[str]] = []
    token = None
    for _ in range(5):  # three pages expected; a token that never runs out stops here
        resp = query(
            d, None, [("person.id", "ASC")], limit=3, **({"token": token} if token else {})
        )
        pages.append(names(resp))
        token = resp.token
        if not token:
            break
    check(
        pages == [["p5", "p7", "p2"], ["p1", "p4", "p3"], ["p6"]],
        "query_state pages by limit with the returned token, then ends without one",
        pages,
    )

    err = refused(d.query_state, STORE, "{not json")
    check(
        err is not None and err.code() == grpc.StatusCode.INTERNAL,
        "a malformed query is refused with INTERNAL",
        err and err.code(),
    )
    assert err is not None
    check(
        err.error_code() == "DAPR_STATE_QUERY_FAILED",
        "its reason is DAPR_STATE_QUERY_FAILED",
        err.error_code(),
    )


def query_unsupported(d: DaprClient) -> None:
    err = refused(d.query_state, STORE, json.dumps({"filter": {"EQ": {"state": "CA"}}}))
    check(err is not None, "query_state on a store without the query API is refused")
    assert err is not None
    check(err.code() == grpc.StatusCode.INTERNAL, "the refusal is INTERNAL", err.code())
    check(
        "does not support querying" in (err.details() or ""),
        "the message says the store does not support querying",
        err.details(),
    )
    check(
        err.error_code() == "DAPR_STATE_QUERYING_NOT_SUPPORTED",
        "its reason is DAPR_STATE_QUERYING_NOT_SUPPORTED",
        err.error_code(),
    )


def main() -> int:
    warnings.filterwarnings("ignore", message="The State Store Query API is an Alpha")
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
