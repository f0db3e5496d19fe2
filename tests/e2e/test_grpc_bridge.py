"""Unary gRPC API calls bridged to the runtime's HTTP/1.1 door answer exactly as grpc.aio does.

With ``--api-transport http`` Envoy's reverse bridge sends the Dapr service's unary methods
to the HTTP door (``tandem.xds.translate.grpc_bridge``, ``tandem.ext_proc.grpc_over_http``);
with ``ext_proc`` they still reach grpc.aio. One sidecar of each, with an API token and a
1 MiB body limit: every call below is made on both and must end the same way — result, or
code, message and rich error details — and the bridge must really carry the http one's.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2, state_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status
from harness import TRANSPORTS, Sidecar, door_app_id, sidecar_per_door

TOKEN = "bridge-test-token"
MiB = 1 << 20
AUTH = (("dapr-api-token", TOKEN),)


@pytest.fixture(scope="module")
def sidecars(tandem_home: Path) -> Iterator[dict[str, Sidecar]]:
    with sidecar_per_door(
        tandem_home, "bridge", "--max-body-size", "1Mi", env={"DAPR_API_TOKEN": TOKEN}
    ) as started:
        yield started


@pytest.fixture(scope="module")
def stubs(sidecars: dict[str, Sidecar]) -> Iterator[dict[str, dapr_pb2_grpc.DaprStub]]:
    channels = {t: grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") for t, s in sidecars.items()}
    try:
        yield {t: dapr_pb2_grpc.DaprStub(c) for t, c in channels.items()}
    finally:
        for c in channels.values():
            c.close()


def _outcome(call: Any, request: Any) -> tuple[str, Any, Any]:
    """("ok", response) or ("error", code, details, rich status) of one call."""
    try:
        return ("ok", call(request, metadata=AUTH, timeout=30), None)
    except grpc.RpcError as err:
        rich: status_pb2.Status | None = rpc_status.from_call(err)  # type: ignore[arg-type]
        return ("error", (err.code(), err.details()), rich)


def _app_id(transport: str) -> str:
    return door_app_id("bridge", transport)


def _both(stubs: dict[str, dapr_pb2_grpc.DaprStub], method: str, request: Any) -> list[Any]:
    return [_outcome(getattr(stubs[t], method), request) for t in TRANSPORTS]


def _same(outcomes: list[Any]) -> bool:
    """Equal but for each sidecar's own app id (state keys carry it)."""
    texts = [
        repr(o).replace(_app_id(t), "<app>") for o, t in zip(outcomes, TRANSPORTS, strict=True)
    ]
    return texts[0] == texts[1]


def _bridged_calls(sidecar: Sidecar) -> int:
    return sidecar.envoy_stats().get("cluster.tandem_runtime_http.upstream_rq_total", 0)


def test_state_and_publish_answer_alike_and_go_through_the_bridge(
    sidecars: dict[str, Sidecar], stubs: dict[str, dapr_pb2_grpc.DaprStub]
) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    before = _bridged_calls(sidecars["http"])
    save = state_pb2.SaveStateRequest(
        store_name="statestore", states=[common_pb2.StateItem(key=key, value=b"v1")]
    )
    assert [o[0] for o in _both(stubs, "SaveState", save)] == ["ok", "ok"]
    got = _both(stubs, "GetState", state_pb2.GetStateRequest(store_name="statestore", key=key))
    assert [o[0] for o in got] == ["ok", "ok"]
    assert [o[1].data for o in got] == [b"v1", b"v1"]
    assert got[0][1].etag and got[1][1].etag
    publish = pubsub_pb2.PublishEventRequest(
        pubsub_name="pubsub", topic="orders", data=b'{"n":1}', data_content_type="application/json"
    )
    assert [o[0] for o in _both(stubs, "PublishEvent", publish)] == ["ok", "ok"]
    # Three calls on the http sidecar's gRPC port reached its HTTP door.
    assert _bridged_calls(sidecars["http"]) - before >= 3


def test_dapr_errors_keep_code_message_and_rich_details(
    stubs: dict[str, dapr_pb2_grpc.DaprStub],
) -> None:
    cases = [
        ("GetState", state_pb2.GetStateRequest(store_name="nope", key="k")),
        (
            "SaveState",
            state_pb2.SaveStateRequest(
                store_name="statestore",
                states=[
                    common_pb2.StateItem(
                        key="etag-k", value=b"x", etag=common_pb2.Etag(value="999999")
                    )
                ],
            ),
        ),
        ("PublishEvent", pubsub_pb2.PublishEventRequest(pubsub_name="nope", topic="t")),
    ]
    rich = []
    for method, request in cases:
        outcomes = _both(stubs, method, request)
        via_bridge = outcomes[0]
        assert via_bridge[0] == "error", (method, via_bridge)
        assert _same(outcomes), (method, outcomes)
        if via_bridge[2] is not None and via_bridge[2].details:
            rich.append(method)
    # Dapr's ErrorInfo survives the bridge (the SDK's DaprGrpcError reads it).
    assert "GetState" in rich


def test_unimplemented_and_undecodable_calls_answer_alike(
    sidecars: dict[str, Sidecar], stubs: dict[str, dapr_pb2_grpc.DaprStub]
) -> None:
    from dapr.proto.runtime.v1 import vector_pb2

    unbuilt = _both(stubs, "QueryVectorsAlpha1", vector_pb2.QueryVectorsRequestAlpha1())
    assert _same(unbuilt), unbuilt
    assert unbuilt[0][1][0] == grpc.StatusCode.UNIMPLEMENTED
    assert "the vector store API is not implemented" in unbuilt[0][1][1]

    # Bytes that are not a GetStateRequest (a field 1 length running past the end).
    outcomes = []
    for transport in TRANSPORTS:
        with grpc.insecure_channel(f"127.0.0.1:{sidecars[transport].grpc_port}") as channel:
            call = channel.unary_unary(
                "/dapr.proto.runtime.v1.Dapr/GetState",
                request_serializer=lambda raw: raw,
                response_deserializer=lambda raw: raw,
            )
            outcomes.append(_outcome(call, b"\x0a\x7fshort"))
    assert _same(outcomes), outcomes
    assert outcomes[0][1][0] == grpc.StatusCode.INVALID_ARGUMENT


def test_a_message_over_the_body_limit_is_resource_exhausted_on_both(
    stubs: dict[str, dapr_pb2_grpc.DaprStub],
) -> None:
    big = state_pb2.SaveStateRequest(
        store_name="statestore", states=[common_pb2.StateItem(key="big", value=b"x" * MiB)]
    )
    outcomes = _both(stubs, "SaveState", big)
    for outcome in outcomes:
        assert outcome[0] == "error"
        assert outcome[1][0] == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    # Past what grpc.aio receives at all (limit + 1 MiB): refused before the handler, on both.
    huge = state_pb2.SaveStateRequest(
        store_name="statestore", states=[common_pb2.StateItem(key="huge", value=b"x" * 3 * MiB)]
    )
    for outcome in _both(stubs, "SaveState", huge):
        assert outcome[0] == "error"
        assert outcome[1][0] == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    # Just under the limit still works on both.
    fits = state_pb2.SaveStateRequest(
        store_name="statestore",
        states=[common_pb2.StateItem(key="fits", value=b"x" * (MiB - 64))],
    )
    assert [o[0] for o in _both(stubs, "SaveState", fits)] == ["ok", "ok"]


def test_a_gzip_compressed_call_is_served(stubs: dict[str, dapr_pb2_grpc.DaprStub]) -> None:
    key = f"gz-{uuid.uuid4().hex[:8]}"
    for transport in TRANSPORTS:
        stubs[transport].SaveState(
            state_pb2.SaveStateRequest(
                store_name="statestore",
                states=[common_pb2.StateItem(key=key, value=b"zipped" * 100)],
            ),
            metadata=AUTH,
            timeout=30,
            compression=grpc.Compression.Gzip,
        )
        got = stubs[transport].GetState(
            state_pb2.GetStateRequest(store_name="statestore", key=key),
            metadata=AUTH,
            timeout=30,
        )
        assert got.data == b"zipped" * 100


def test_the_token_is_still_checked_before_the_bridge(
    stubs: dict[str, dapr_pb2_grpc.DaprStub],
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stubs["http"].GetState(state_pb2.GetStateRequest(store_name="statestore", key="k"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_http_port_does_not_serve_bridged_grpc(sidecars: dict[str, Sidecar]) -> None:
    """Only Envoy's bridge route marks a call as bridged gRPC; on the HTTP API port the mark is
    stripped, so a gRPC-shaped request there is not a way around the gRPC port's checks."""
    message = state_pb2.GetStateRequest(store_name="statestore", key="k").SerializeToString()
    body = struct.pack(">BI", 0, len(message)) + message
    r = httpx.post(
        f"{sidecars['http'].base}/dapr.proto.runtime.v1.Dapr/GetState",
        content=body,
        headers={
            "content-type": "application/grpc",
            "x-tandem-grpc-bridge": "1",
            "dapr-api-token": TOKEN,
        },
        timeout=10,
    )
    assert r.status_code == 404
    assert r.json()["errorCode"]


def test_workflow_task_hub_calls_answer_alike_through_the_bridge(
    sidecars: dict[str, Sidecar],
) -> None:
    """The workflow SDK's unary task-hub calls are bridged too (its work-item stream is not)."""
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as spb_grpc

    before = _bridged_calls(sidecars["http"])
    outcomes = []
    for transport in TRANSPORTS:
        with grpc.insecure_channel(f"127.0.0.1:{sidecars[transport].grpc_port}") as channel:
            hub = spb_grpc.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            # A worker's stream, never answered: the sidecar hosts its app's workflows once a
            # worker connects (as in Dapr), and the instance then waits for its turn forever.
            worker = hub.GetWorkItems(spb.GetWorkItemsRequest(), metadata=AUTH)
            instance = f"wf-{uuid.uuid4().hex[:8]}"
            started = hub.StartInstance(
                spb.CreateInstanceRequest(instanceId=instance, name="no_worker_for_this"),
                metadata=AUTH,
                timeout=30,
            )
            got = hub.GetInstance(
                spb.GetInstanceRequest(instanceId=instance), metadata=AUTH, timeout=30
            )
            missing = _outcome(
                hub.GetInstance, spb.GetInstanceRequest(instanceId="nope-" + instance)
            )
            # No worker runs it: the wait ends at the caller's deadline, on either server.
            try:
                hub.WaitForInstanceCompletion(
                    spb.GetInstanceRequest(instanceId=instance), metadata=AUTH, timeout=1.5
                )
                waited = "completed"
            except grpc.RpcError as err:
                waited = err.code().name
            bad_name = _outcome(
                hub.StartInstance, spb.CreateInstanceRequest(instanceId="x" + instance)
            )
            worker.cancel()
            outcomes.append(
                (
                    started.instanceId == instance,
                    got.exists,
                    got.workflowState.name,
                    missing[0],
                    missing[1].exists if missing[0] == "ok" else missing[1],
                    waited,
                    bad_name[0],
                    bad_name[1],
                )
            )
    assert outcomes[0] == outcomes[1], outcomes
    assert outcomes[0][:3] == (True, True, "no_worker_for_this")
    assert outcomes[0][5] == "DEADLINE_EXCEEDED"
    assert outcomes[0][6] == "error"
    assert _bridged_calls(sidecars["http"]) - before >= 5
