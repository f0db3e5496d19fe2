"""Issue acceptance: every refusal of the state API, through a real `tandem run` (Envoy in
the path), over HTTP and gRPC. Each refusal gets Dapr's status and error code, the sidecar
keeps serving, and nothing stored changes.

Two sidecars serve the whole module: ``sqlite`` is the embedded default (no resources
path, 4 MiB body limit); ``redis`` loads a ``state.redis`` component YAML pointing at a real
Redis and raises the body limit with ``--dapr-http-max-request-size 8``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from harness import Sidecar, start_sidecar

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)

MiB = 1 << 20
REDIS_STORE = "redisstore"
REDIS_COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{address}"
  - name: redisPassword
    value: ""
"""


@dataclass
class Target:
    """One sidecar and the store the tests aim at, with an HTTP client and a gRPC stub."""

    name: str
    sidecar: Sidecar
    store: str
    http: httpx.Client
    channel: grpc.Channel
    stub: dapr_pb2_grpc.DaprStub

    def url(self, suffix: str = "", store: str | None = None) -> str:
        return f"/v1.0/state/{store or self.store}{suffix}"

    def read(self, key: str) -> tuple[bytes, str] | None:
        """(value, etag) as the HTTP API returns them, None when the key is absent."""
        r = self.http.get(self.url(f"/{key}"))
        if r.status_code == 204:
            return None
        assert r.status_code == 200, r.text
        return r.content, r.headers["etag"]

    def save(self, key: str, value: object) -> str:
        r = self.http.post(self.url(), json=[{"key": key, "value": value}])
        assert r.status_code == 204, r.text
        stored = self.read(key)
        assert stored is not None
        return stored[1]


@dataclass(frozen=True)
class Seed:
    """A key saved twice before the test: its current value/etag and the stale first etag."""

    key: str
    value: bytes
    etag: str
    stale_etag: str


@pytest.fixture(scope="module")
def sidecars(tandem_home: Path, redis_server: RedisServer) -> Iterator[dict[str, Sidecar]]:  # noqa: F811
    resources = tandem_home / "errors-resources"
    resources.mkdir()
    (resources / "redis.yaml").write_text(
        REDIS_COMPONENT.format(name=REDIS_STORE, address=redis_server.address)
    )
    started = {
        "sqlite": start_sidecar(tandem_home, "errs-sqlite"),
        "redis": start_sidecar(
            tandem_home,
            "errs-redis",
            "--resources-path",
            str(resources),
            "--dapr-http-max-request-size",
            "8",
        ),
    }
    yield started
    for s in started.values():
        s.stop()


@pytest.fixture(scope="module")
def targets(sidecars: dict[str, Sidecar]) -> Iterator[dict[str, Target]]:
    made = {}
    for name, store in (("sqlite", "statestore"), ("redis", REDIS_STORE)):
        sidecar = sidecars[name]
        channel = grpc.insecure_channel(
            f"127.0.0.1:{sidecar.grpc_port}", options=[("grpc.max_receive_message_length", -1)]
        )
        made[name] = Target(
            name,
            sidecar,
            store,
            httpx.Client(base_url=sidecar.base, timeout=30),
            channel,
            dapr_pb2_grpc.DaprStub(channel),
        )
    yield made
    for t in made.values():
        t.http.close()
        t.channel.close()


@pytest.fixture(params=["sqlite", "redis"])
def target(request: pytest.FixtureRequest, targets: dict[str, Target]) -> Target:
    return targets[request.param]


@pytest.fixture
def seed(target: Target) -> Iterator[Seed]:
    """A stored key that must come through every refusal untouched."""
    key = f"seed-{uuid.uuid4().hex[:10]}"
    stale = target.save(key, {"n": 0})
    current = target.save(key, {"n": 1})
    assert current != stale
    yield Seed(key, b'{"n":1}', current, stale)
    # After every refusal: the sidecar still serves and the seed is exactly as it was.
    assert target.http.get("/v1.0/healthz").status_code == 204
    assert target.read(key) == (b'{"n":1}', current)
    got = target.stub.GetState(state_pb2.GetStateRequest(store_name=target.store, key=key))
    assert (got.data, got.etag) == (b'{"n":1}', current)


def fresh_key() -> str:
    return f"new-{uuid.uuid4().hex[:10]}"


def assert_dapr_error(r: httpx.Response, status: int, error_code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["errorCode"] == error_code, body
    assert body["message"]


def grpc_refusal(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def item(key: str, value: bytes = b"x", etag: str | None = None, **kw) -> common_pb2.StateItem:
    return common_pb2.StateItem(
        key=key, value=value, etag=common_pb2.Etag(value=etag) if etag else None, **kw
    )


def upsert(key: str, value: bytes = b"x", etag: str | None = None):
    return state_pb2.TransactionalStateOperation(
        operationType="upsert", request=item(key, value, etag)
    )


# -- malformed JSON ---------------------------------------------------------------------------

TRUNCATED = {
    "save": ("", b'[{"key": "k", "value": '),
    "bulk get": ("/bulk", b'{"keys": ["k"'),
    "transaction": ("/transaction", b'{"operations": [}'),
    "not json at all": ("", b"key=k&value=v"),
}


@pytest.mark.parametrize("case", TRUNCATED)
def test_http_malformed_json_is_400_err_malformed_request(target: Target, seed: Seed, case):
    suffix, body = TRUNCATED[case]
    r = target.http.post(
        target.url(suffix), content=body, headers={"content-type": "application/json"}
    )
    assert_dapr_error(r, 400, "ERR_MALFORMED_REQUEST")


@pytest.mark.parametrize("rpc", ["SaveState", "GetBulkState", "ExecuteStateTransaction"])
def test_grpc_undecodable_message_is_refused_and_harmless(target: Target, seed: Seed, rpc):
    # gRPC's twin of malformed JSON: a length-delimited field whose length runs past the end.
    raw = target.channel.unary_unary(f"/dapr.proto.runtime.v1.Dapr/{rpc}")
    err = grpc_refusal(raw, b"\x0a\x7fstatestore")
    # The caller's mistake, so INVALID_ARGUMENT (issue 10), never grpc.aio's UNKNOWN with a
    # Python exception name in it (daprd, through grpc-go, says INTERNAL).
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be parsed" in (err.details() or "")
    assert "DecodeError" not in (err.details() or "")


# -- wrong types ------------------------------------------------------------------------------

# Each save case puts a valid item for KEY first: refusing the batch must not write it.
KEY = "typed-key"
WRONG_TYPES = {
    "save body is an object": ("", {"key": KEY, "value": 1}),
    "key is a number": ("", [{"key": KEY, "value": 1}, {"key": 7, "value": 1}]),
    "key is missing": ("", [{"key": KEY, "value": 1}, {"value": 1}]),
    "etag is a number": ("", [{"key": KEY, "value": 1}, {"key": "o", "value": 1, "etag": 3}]),
    "options is a string": (
        "",
        [{"key": KEY, "value": 1}, {"key": "o", "value": 1, "options": "x"}],
    ),
    "metadata value is a number": (
        "",
        [{"key": KEY, "value": 1}, {"key": "o", "value": 1, "metadata": {"ttlInSeconds": 5}}],
    ),
    "bulk keys are numbers": ("/bulk", {"keys": [1, 2]}),
    "bulk parallelism is a string": ("/bulk", {"keys": [KEY], "parallelism": "2"}),
    "transaction body is a list": ("/transaction", [{"operation": "upsert"}]),
    "operations is an object": ("/transaction", {"operations": {"operation": "upsert"}}),
    "operation request is a list": (
        "/transaction",
        {
            "operations": [
                {"operation": "upsert", "request": {"key": KEY, "value": 1}},
                {"operation": "upsert", "request": []},
            ]
        },
    ),
}


@pytest.mark.parametrize("case", WRONG_TYPES)
def test_http_wrong_json_types_are_400_and_write_nothing(target: Target, seed: Seed, case):
    suffix, body = WRONG_TYPES[case]
    r = target.http.post(target.url(suffix), json=body)
    assert_dapr_error(r, 400, "ERR_MALFORMED_REQUEST")
    assert target.read(KEY) is None


# -- empty keys and keys containing "||" ------------------------------------------------------

BAD_KEYS = {"empty key": "", "key containing ||": "a||b"}


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_http_save_with_an_illegal_key_is_400_and_writes_no_item(target: Target, seed: Seed, bad):
    good = fresh_key()
    r = target.http.post(
        target.url(), json=[{"key": good, "value": 1}, {"key": BAD_KEYS[bad], "value": 2}]
    )
    assert_dapr_error(r, 400, "ERR_MALFORMED_REQUEST")
    assert target.read(good) is None


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_http_transaction_with_an_illegal_key_is_400_and_applies_nothing(
    target: Target, seed: Seed, bad
):
    good = fresh_key()
    ops = [
        {"operation": "upsert", "request": {"key": good, "value": 1}},
        {"operation": "delete", "request": {"key": seed.key}},
        {"operation": "upsert", "request": {"key": BAD_KEYS[bad], "value": 2}},
    ]
    r = target.http.post(target.url("/transaction"), json={"operations": ops})
    assert_dapr_error(r, 400, "ERR_MALFORMED_REQUEST")
    assert target.read(good) is None


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_http_bulk_get_with_an_illegal_key_is_400(target: Target, seed: Seed, bad):
    r = target.http.post(target.url("/bulk"), json={"keys": [seed.key, BAD_KEYS[bad]]})
    assert_dapr_error(r, 400, "ERR_MALFORMED_REQUEST")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_http_key_containing_double_pipe_in_the_url_is_400(target: Target, seed: Seed, method):
    r = target.http.request(method, target.url(f"/{seed.key}||x"))
    assert_dapr_error(r, 400, "ERR_MALFORMED_REQUEST")


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_grpc_illegal_keys_are_invalid_argument_and_change_nothing(target: Target, seed: Seed, bad):
    key, good, s = BAD_KEYS[bad], fresh_key(), target.store
    calls = [
        (target.stub.GetState, state_pb2.GetStateRequest(store_name=s, key=key)),
        (target.stub.DeleteState, state_pb2.DeleteStateRequest(store_name=s, key=key)),
        (
            target.stub.SaveState,
            state_pb2.SaveStateRequest(store_name=s, states=[item(good), item(key)]),
        ),
        (
            target.stub.GetBulkState,
            state_pb2.GetBulkStateRequest(store_name=s, keys=[seed.key, key]),
        ),
        (
            target.stub.ExecuteStateTransaction,
            state_pb2.ExecuteStateTransactionRequest(
                storeName=s, operations=[upsert(good), upsert(key)]
            ),
        ),
        (
            target.stub.DeleteBulkState,
            state_pb2.DeleteBulkStateRequest(store_name=s, states=[item(seed.key), item(key)]),
        ),
    ]
    for call, request in calls:
        err = grpc_refusal(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (call, err.details())
    assert target.read(good) is None


# -- unknown stores ---------------------------------------------------------------------------

UNKNOWN_STORE_HTTP = {
    "get": ("GET", "/k", None),
    "delete": ("DELETE", "/k", None),
    "save": ("POST", "", b'[{"key": "k", "value": 1}]'),
    "save with a malformed body": ("POST", "", b"[{"),  # the store is named before the body
    "bulk get": ("POST", "/bulk", b'{"keys": ["k"]}'),
    "transaction": ("POST", "/transaction", b'{"operations": []}'),
}


@pytest.mark.parametrize("case", UNKNOWN_STORE_HTTP)
def test_http_unknown_store_is_400_err_state_store_not_found(target: Target, seed: Seed, case):
    method, suffix, body = UNKNOWN_STORE_HTTP[case]
    r = target.http.request(method, target.url(suffix, store="nosuchstore"), content=body)
    assert_dapr_error(r, 400, "ERR_STATE_STORE_NOT_FOUND")


def test_grpc_unknown_store_is_invalid_argument(target: Target, seed: Seed):
    s = "nosuchstore"
    calls = [
        (target.stub.GetState, state_pb2.GetStateRequest(store_name=s, key="k")),
        (target.stub.SaveState, state_pb2.SaveStateRequest(store_name=s, states=[item("k")])),
        (target.stub.DeleteState, state_pb2.DeleteStateRequest(store_name=s, key="k")),
        (target.stub.GetBulkState, state_pb2.GetBulkStateRequest(store_name=s, keys=["k"])),
        (
            target.stub.ExecuteStateTransaction,
            state_pb2.ExecuteStateTransactionRequest(storeName=s, operations=[upsert("k")]),
        ),
    ]
    for call, request in calls:
        err = grpc_refusal(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (call, err.details())
        assert "nosuchstore" in (err.details() or "")


# -- etags ------------------------------------------------------------------------------------


def test_http_save_with_a_stale_etag_is_409_err_state_save(target: Target, seed: Seed):
    r = target.http.post(
        target.url(),
        json=[{"key": seed.key, "value": "lost", "etag": seed.stale_etag}],
    )
    assert_dapr_error(r, 409, "ERR_STATE_SAVE")


def test_http_delete_with_a_stale_etag_is_409_err_state_delete(target: Target, seed: Seed):
    r = target.http.delete(target.url(f"/{seed.key}"), headers={"if-match": seed.stale_etag})
    assert_dapr_error(r, 409, "ERR_STATE_DELETE")


def test_http_save_with_an_invalid_etag_is_400_err_state_save(target: Target, seed: Seed):
    r = target.http.post(
        target.url(), json=[{"key": seed.key, "value": "lost", "etag": "not-an-etag"}]
    )
    assert_dapr_error(r, 400, "ERR_STATE_SAVE")


def test_http_delete_with_an_invalid_etag_is_400_err_state_delete(target: Target, seed: Seed):
    r = target.http.delete(target.url(f"/{seed.key}"), headers={"if-match": "not-an-etag"})
    assert_dapr_error(r, 400, "ERR_STATE_DELETE")


def test_http_transaction_with_a_stale_etag_is_500_and_applies_nothing(target: Target, seed: Seed):
    good = fresh_key()
    ops = [
        {"operation": "upsert", "request": {"key": good, "value": 1}},
        {"operation": "delete", "request": {"key": seed.key, "etag": seed.stale_etag}},
    ]
    r = target.http.post(target.url("/transaction"), json={"operations": ops})
    assert_dapr_error(r, 500, "ERR_STATE_TRANSACTION")
    assert target.read(good) is None


@pytest.mark.parametrize(
    ("etag", "code"),
    [("stale", grpc.StatusCode.ABORTED), ("not-an-etag", grpc.StatusCode.INVALID_ARGUMENT)],
    ids=["stale etag is aborted", "invalid etag is invalid argument"],
)
def test_grpc_save_and_delete_with_a_bad_etag_are_refused(
    target: Target, seed: Seed, etag: str, code: grpc.StatusCode
):
    value = seed.stale_etag if etag == "stale" else etag
    save = state_pb2.SaveStateRequest(
        store_name=target.store, states=[item(seed.key, b"lost", value)]
    )
    assert grpc_refusal(target.stub.SaveState, save).code() == code
    delete = state_pb2.DeleteStateRequest(
        store_name=target.store, key=seed.key, etag=common_pb2.Etag(value=value)
    )
    assert grpc_refusal(target.stub.DeleteState, delete).code() == code


def test_grpc_transaction_with_a_stale_etag_applies_nothing(target: Target, seed: Seed):
    good = fresh_key()
    delete = state_pb2.TransactionalStateOperation(
        operationType="delete", request=item(seed.key, etag=seed.stale_etag)
    )
    request = state_pb2.ExecuteStateTransactionRequest(
        storeName=target.store, operations=[upsert(good), delete]
    )
    err = grpc_refusal(target.stub.ExecuteStateTransaction, request)
    assert err.code() == grpc.StatusCode.INTERNAL  # Dapr reports transaction failures as 500
    assert target.read(good) is None


# -- bodies over the limit --------------------------------------------------------------------


def _big_save_body(key: str, size: int) -> bytes:
    return b'[{"key":"' + key.encode() + b'","value":"' + b"x" * size + b'"}]'


def test_http_body_over_the_default_4_mib_is_413_with_dapr_json(targets: dict[str, Target]):
    target = targets["sqlite"]
    key = fresh_key()
    r = target.http.post(
        target.url(),
        content=_big_save_body(key, 5 * MiB),
        headers={"content-type": "application/json"},
    )
    assert_dapr_error(r, 413, "ERR_REQUEST_TOO_LARGE")
    assert target.http.get("/v1.0/healthz").status_code == 204
    assert target.read(key) is None


def test_http_max_request_size_flag_raises_the_limit(targets: dict[str, Target]):
    target = targets["redis"]  # started with --dapr-http-max-request-size 8
    key = fresh_key()
    r = target.http.post(
        target.url(),
        content=_big_save_body(key, 5 * MiB),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 204, r.text[:500]
    stored = target.read(key)
    assert stored is not None and len(stored[0]) == 5 * MiB + 2  # the JSON string's quotes


def test_grpc_message_over_the_default_limit_is_resource_exhausted(targets: dict[str, Target]):
    target = targets["sqlite"]
    key = fresh_key()
    request = state_pb2.SaveStateRequest(
        store_name=target.store, states=[item(key, b"x" * (5 * MiB))]
    )
    err = grpc_refusal(target.stub.SaveState, request)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert target.http.get("/v1.0/healthz").status_code == 204
    assert target.read(key) is None


def test_grpc_max_request_size_flag_raises_the_limit(targets: dict[str, Target]):
    target = targets["redis"]
    key = fresh_key()
    target.stub.SaveState(
        state_pb2.SaveStateRequest(store_name=target.store, states=[item(key, b"y" * (5 * MiB))]),
        timeout=30,
    )
    got = target.stub.GetState(
        state_pb2.GetStateRequest(store_name=target.store, key=key),
        timeout=30,
    )
    assert got.data == b"y" * (5 * MiB)
