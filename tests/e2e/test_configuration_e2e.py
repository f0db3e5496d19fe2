"""Configuration fields that change what a sidecar serves (issue 13): spec.api.denied
through both HTTP doors and gRPC, spec.components.deny, warnings for fields not honoured."""

from __future__ import annotations

import grpc
import httpx
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from google.protobuf import empty_pb2
from harness import APPS, start_app_sidecar, start_sidecar, wait_until

from tandem.logs import parse_line

DENY_STATE = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: nostate}
spec:
  api:
    denied:
    - {name: state, version: v1.0, protocol: http}
    - {name: state, version: v1, protocol: grpc}
    - {name: publish}
  features:
  - {name: NoSuchFeature, enabled: true}
  - {name: HotReload, enabled: true}
"""


@pytest.fixture(scope="module")
def mesh(tandem_home):
    config = tandem_home / "nostate.yaml"
    config.write_text(DENY_STATE)
    b = start_app_sidecar(tandem_home, "b", APPS / "echo_app.py")
    # The first logs JSON (--log-as-json), the second Dapr's text shape.
    doors = [
        start_sidecar(tandem_home, f"a-{t}", "--api-transport", t, "--config", str(config), *extra)
        for t, extra in (("http", ("--log-as-json",)), ("ext_proc", ()))
    ]
    yield doors, b
    for s in (*doors, b):
        s.stop()


def test_denied_state_is_refused_over_http_through_both_doors(mesh):
    doors, _ = mesh
    for a in doors:
        r = httpx.post(f"{a.base}/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
        assert r.status_code == 404, (a.app_id, r.text)
        assert r.json()["errorCode"] == "ERR_BAD_REQUEST"
        assert httpx.get(f"{a.base}/v1.0/state/statestore/k").status_code == 404


def test_denied_state_is_refused_over_grpc(mesh):
    doors, _ = mesh
    with grpc.insecure_channel(f"127.0.0.1:{doors[0].grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetState(state_pb2.GetStateRequest(store_name="statestore", key="k"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "GetState" in (err.value.details() or "")
        # Other gRPC APIs still answer.
        assert stub.GetMetadata(empty_pb2.Empty()).id == doors[0].app_id


def test_metadata_and_invoke_still_work_and_incomplete_rules_match_nothing(mesh):
    doors, _ = mesh
    for a in doors:
        md = httpx.get(f"{a.base}/v1.0/metadata").json()
        assert md["id"] == a.app_id
        assert md.get("enabledFeatures") == ["HotReload"]  # the unknown one is not recorded
        wait_until(
            lambda a=a: httpx.get(f"{a.base}/v1.0/invoke/b/method/x").status_code == 200,
            30,
            f"{a.app_id} to invoke b",
        )
        # `{name: publish}` has no version nor protocol: it refuses nothing.
        assert httpx.post(f"{a.base}/v1.0/publish/pubsub/t", json={}).status_code == 204
    out = doors[0].text()
    assert "spec.api.denied[2] (publish)" in out and "matches nothing" in out
    assert "'NoSuchFeature' is not a feature Tandem knows" in out


def test_components_deny_refuses_the_component_at_start(tandem_home):
    config = tandem_home / "nosqlite.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n"
        "spec:\n  components:\n    deny: [state.sqlite]\n"
    )
    s = start_sidecar(tandem_home, "denied", "--config", str(config), wait=False)
    assert s.proc.wait(60) != 0
    out = s.text()
    assert "statestore" in out and "spec.components.deny" in out and "nosqlite.yaml" in out


def test_runtime_log_lines_name_the_app_in_the_shape_asked_for(mesh, tandem_home):
    doors, _ = mesh
    for sidecar, json_lines in ((doors[0], True), (doors[1], False)):
        lines = (tandem_home / "logs" / f"{sidecar.app_id}.runtime.log").read_text().splitlines()
        assert lines
        assert all(line.startswith("{") == json_lines for line in lines), lines[:3]
        entries = [parse_line(line) for line in lines]
        assert all(e is not None and e["app_id"] == sidecar.app_id for e in entries)
