"""Issue acceptance, end to end: two apps under `tandem run`, invocation Envoy → Envoy."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from harness import APPS, start_app_sidecar, start_sidecar, wait_until


@pytest.fixture(scope="module")
def mesh(tandem_home):
    b = start_app_sidecar(tandem_home, "b", APPS / "echo_app.py")
    a = start_sidecar(tandem_home, "a")
    yield a, b
    for s in (a, b):
        s.stop()


def _invoke_ready(a, app_id: str) -> bool:
    r = httpx.get(f"{a.base}/v1.0/invoke/{app_id}/method/ping", timeout=5)
    return r.headers.get("x-echo-app") == "yes"


def test_invoke_preserves_verb_path_query_headers_and_body(mesh):
    a, b = mesh
    wait_until(lambda: _invoke_ready(a, "b"), 30, "a's Envoy to learn about b")
    r = httpx.post(
        f"{a.base}/v1.0/invoke/b/method/hello/world?x=1&y=two",
        content=b'{"order": 7}',
        headers={"content-type": "application/json", "x-custom": "kept"},
        timeout=10,
    )
    assert r.status_code == 201  # the callee's status, verbatim
    assert r.headers["x-echo-app"] == "yes"  # the callee's headers, verbatim
    seen = r.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/hello/world"
    assert seen["query"] == "x=1&y=two"
    assert seen["body"] == '{"order": 7}'
    assert seen["headers"]["x-custom"] == "kept"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["dapr-caller-app-id"] == "a"
    assert seen["headers"]["dapr-callee-app-id"] == "b"
    # As from Dapr: none of Envoy's own headers reach the app or come back to the caller.
    envoyish = [h for h in seen["headers"] if h.startswith("x-envoy-") or h == "x-request-id"]
    assert envoyish == []
    assert not [h for h in r.headers if h.startswith("x-envoy-")]


@pytest.mark.parametrize("verb", ["GET", "PUT", "DELETE", "PATCH"])
def test_invoke_passes_every_verb(mesh, verb):
    a, _ = mesh
    wait_until(lambda: _invoke_ready(a, "b"), 30, "a's Envoy to learn about b")
    r = httpx.request(verb, f"{a.base}/v1.0/invoke/b/method/v", timeout=10)
    assert r.status_code == 200
    assert r.json()["method"] == verb


def test_invoke_by_dapr_app_id_header(mesh):
    a, _ = mesh
    wait_until(lambda: _invoke_ready(a, "b"), 30, "a's Envoy to learn about b")
    r = httpx.get(f"{a.base}/orders/9?z=3", headers={"dapr-app-id": "b"}, timeout=10)
    assert r.status_code == 200
    seen = r.json()
    assert (seen["path"], seen["query"]) == ("/orders/9", "z=3")
    assert "dapr-app-id" not in seen["headers"]


def test_invocation_goes_envoy_to_envoy(mesh):
    a, b = mesh
    wait_until(lambda: _invoke_ready(a, "b"), 30, "a's Envoy to learn about b")
    # Envoy writes the cluster `app:b` as `app_b` in stat names.
    before_a = a.envoy_stats().get("cluster.app_b.upstream_rq_total", 0)
    before_b = b.envoy_stats().get("http.dapr_inbound.downstream_rq_total", 0)
    r = httpx.get(f"{a.base}/v1.0/invoke/b/method/count", timeout=10)
    assert r.headers["x-tandem-callee"] == "b"
    assert a.envoy_stats()["cluster.app_b.upstream_rq_total"] == before_a + 1
    assert b.envoy_stats()["http.dapr_inbound.downstream_rq_total"] == before_b + 1


def test_unknown_app_is_err_direct_invoke(mesh):
    a, _ = mesh
    r = httpx.get(f"{a.base}/v1.0/invoke/nobody/method/x", timeout=10)
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["errorCode"] == "ERR_DIRECT_INVOKE"


def test_metadata_reports_app_id_and_components(mesh):
    a, _ = mesh
    md = httpx.get(f"{a.base}/v1.0/metadata", timeout=10).json()
    assert md["id"] == "a"
    assert md["runtimeVersion"]
    names = {c["name"]: c for c in md.get("components", [])}
    assert names["statestore"]["type"] == "state.sqlite"


def test_list_shows_both_sidecars(mesh, tandem_home):
    out = subprocess.run(
        [sys.executable, "-m", "tandem.cli.main", "list", "--output", "json"],
        env={"TANDEM_HOME": str(tandem_home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    apps = {x["app_id"]: x for x in json.loads(out)}
    assert set(apps) >= {"a", "b"}
    assert apps["a"]["http_port"] == mesh[0].http_port


def test_official_sdk_connects_and_reads_metadata(tandem_home):
    """`tandem run -- CMD` runs the app with DAPR_* set and exits with the app's code."""
    c = start_sidecar(
        tandem_home,
        "sdkapp",
        command=[sys.executable, str(APPS / "sdk_metadata.py"), "sdkapp"],
        wait=False,
    )
    assert c.proc.wait(90) == 0, c.text()
    assert "app id from metadata: sdkapp" in c.text()


def test_app_exit_code_is_tandem_runs_exit_code(tandem_home):
    c = start_sidecar(
        tandem_home, "fails", command=[sys.executable, "-c", "raise SystemExit(7)"], wait=False
    )
    assert c.proc.wait(90) == 7, c.text()


def test_stopping_one_sidecar_leaves_the_others_serving(tandem_home):
    b = start_app_sidecar(tandem_home, "b2", APPS / "echo_app.py")
    first = start_sidecar(tandem_home, "first")
    wait_until(lambda: _invoke_ready(first, "b2"), 30, "first to reach b2")
    stop = subprocess.run(
        [sys.executable, "-m", "tandem.cli.main", "stop", "--app-id", "first"],
        env={"TANDEM_HOME": str(tandem_home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stderr
    assert first.proc.wait(30) == 0
    # b2 keeps serving, and a sidecar started after the first one stopped still gets xDS.
    assert httpx.get(f"{b.base}/v1.0/healthz", timeout=5).status_code == 204
    later = start_sidecar(tandem_home, "later")
    wait_until(lambda: _invoke_ready(later, "b2"), 30, "a new sidecar to reach b2")
    # And once b2 is gone, the route to it goes too.
    b.stop()
    wait_until(
        lambda: httpx.get(f"{later.base}/v1.0/invoke/b2/method/x", timeout=5).status_code == 500,
        30,
        "the route to b2 to disappear",
    )
    later.stop()
