"""Hot reload (issue 11): edits to a running sidecar's --resources-path take effect with no
restart, a broken edit changes nothing, and traffic flowing meanwhile sees no failure."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from itertools import count

import httpx
import pytest
from harness import APPS, start_sidecar, tandem_cli, wait_until

from tandem.cli.ports import free_port

RETRIES = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: reloaded}}
spec:
  policies:
    retries: {{again: {{policy: constant, duration: 10ms, maxRetries: {retries}}}}}
  targets:
    apps:
      target: {{retry: again}}
"""

ACCESS = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: target}}
spec:
  accessControl:
    defaultAction: {action}
    trustDomain: public
"""

KEYS = count()


@pytest.fixture(scope="module")
def mesh(tandem_home, tmp_path_factory):
    resources = tmp_path_factory.mktemp("res")
    config = resources.parent / "target-config.yaml"
    config.write_text(ACCESS.format(action="allow"))
    port = free_port()
    app = subprocess.Popen([sys.executable, str(APPS / "scripted_app.py"), str(port)])
    target = start_sidecar(tandem_home, "target", "--app-port", str(port), "--config", str(config))
    caller = start_sidecar(tandem_home, "caller", "--resources-path", str(resources))
    wait_until(lambda: invoke(caller, "ok").status_code == 200, 30, "caller to reach target")
    yield caller, resources, tandem_home, config
    for s in (caller, target):
        s.stop()
    app.terminate()
    app.wait(10)


def invoke(caller, method: str) -> httpx.Response:
    return httpx.get(f"{caller.base}/v1.0/invoke/target/method/{method}", timeout=30)


def fails_once_then_succeeds(caller) -> bool:
    """One call that fails once: 200 only if the caller's Envoy retries it."""
    return invoke(caller, f"flaky/k{next(KEYS)}/500/1").status_code == 200


def test_a_resiliency_added_while_traffic_flows_applies_without_a_restart(mesh):
    caller, resources, _, _ = mesh
    assert not fails_once_then_succeeds(caller)
    (resources / "resiliency.yaml").write_text(RETRIES.format(retries=2))
    wait_until(lambda: fails_once_then_succeeds(caller), 10, "the retry policy to apply")


def test_a_broken_edit_changes_nothing_and_is_logged_by_file_and_field(mesh):
    caller, resources, home, _ = mesh
    wait_until(lambda: fails_once_then_succeeds(caller), 10, "the retry policy")
    broken = resources / "resiliency.yaml"
    broken.write_text(RETRIES.format(retries='"many"'))
    log = home / "logs" / "controlplane.log"
    wait_until(
        lambda: "spec.policies.retries.again.maxRetries" in log.read_text(errors="replace"),
        10,
        "the control plane to report the broken field",
    )
    assert str(broken) in log.read_text(errors="replace")
    assert fails_once_then_succeeds(caller)  # the last good policy still applies
    broken.write_text(RETRIES.format(retries=2))


def reloads(home) -> int:
    return (
        (home / "logs" / "controlplane.log").read_text(errors="replace").count("resources reloaded")
    )


def test_no_request_fails_while_policies_are_reloaded_under_load(mesh):
    caller, resources, home, _ = mesh
    reloads_before = reloads(home)
    statuses: list[int] = []
    done = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=30) as client:  # kept alive across every reload
            for _ in range(3000):
                r = client.get(f"{caller.base}/v1.0/invoke/target/method/ok")
                statuses.append(r.status_code)
        done.set()

    worker = threading.Thread(target=traffic)
    worker.start()
    retries = 1
    while not done.is_set():
        retries = 3 - retries  # 1, 2, 1, ...: a new route configuration each time
        (resources / "resiliency.yaml").write_text(RETRIES.format(retries=retries))
        time.sleep(0.3)  # pacing the edits, not synchronising: the traffic runs regardless
    worker.join()
    assert len(statuses) == 3000
    assert set(statuses) == {200}
    assert reloads(home) - reloads_before >= 2  # the routes did change under the traffic


STORE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: hot}
spec:
  type: state.in-memory
  version: v1
"""


def config_version(home) -> str:
    out = tandem_cli(home, "list", "--output", "json", check=True).stdout
    [caller] = [a for a in json.loads(out) if a["app_id"] == "caller"]
    return caller["config_version"]


def store_missing(url: str) -> bool:
    body = httpx.get(f"{url}/k", timeout=10).json()
    return isinstance(body, dict) and body.get("errorCode", "").startswith("ERR_STATE_STORE_NOT_")


def test_a_state_store_is_added_then_removed_without_a_restart(mesh):
    caller, resources, home, _ = mesh
    before = config_version(home)
    url = f"{caller.base}/v1.0/state/hot"
    assert store_missing(url)
    (resources / "store.yaml").write_text(STORE)
    wait_until(
        lambda: httpx.post(url, json=[{"key": "k", "value": 1}], timeout=10).status_code == 204,
        10,
        "the new store to serve",
    )
    assert httpx.get(f"{url}/k", timeout=10).json() == 1
    names = [
        c["name"]
        for c in httpx.get(f"{caller.base}/v1.0/metadata", timeout=10).json()["components"]
    ]
    assert "hot" in names
    assert config_version(home) != before
    (resources / "store.yaml").unlink()
    wait_until(lambda: store_missing(url), 10, "the store to be gone")


def test_a_broken_component_edit_keeps_the_running_stores(mesh):
    caller, resources, home, _ = mesh
    (resources / "store.yaml").write_text(STORE)
    url = f"{caller.base}/v1.0/state/hot"
    wait_until(
        lambda: httpx.post(url, json=[{"key": "k", "value": 2}], timeout=10).status_code == 204,
        10,
        "the store to serve",
    )
    (resources / "store.yaml").write_text(STORE.replace("version: v1", "version: [v1]"))
    log = home / "logs" / "caller.runtime.log"
    wait_until(
        lambda: "resources not reloaded" in log.read_text(errors="replace"),
        10,
        "the runtime to report the broken file",
    )
    assert httpx.get(f"{url}/k", timeout=10).json() == 2
    (resources / "store.yaml").unlink()


BLOCKS = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: hotlock}}
spec:
  type: lock.sqlite
  version: v1
  metadata:
  - {{name: connectionString, value: "{db}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: hotllm}}
spec:
  type: conversation.echo
  version: v1
"""


def test_lock_and_conversation_components_are_added_then_removed_without_a_restart(mesh):
    caller, resources, home, _ = mesh
    lock_url = f"{caller.base}/v1.0-alpha1/lock/hotlock"
    converse_url = f"{caller.base}/v1.0-alpha1/conversation/hotllm/converse"
    lock = {"resourceId": "r", "lockOwner": "me", "expiryInSeconds": 60}
    ask = {"inputs": [{"content": "hello"}]}
    missing = httpx.post(lock_url, json=lock, timeout=10).json()
    assert missing["errorCode"] == "ERR_LOCK_STORE_NOT_CONFIGURED"  # the caller has none
    (resources / "blocks.yaml").write_text(BLOCKS.format(db=home / "hot-lock.db"))
    wait_until(
        lambda: httpx.post(lock_url, json=lock, timeout=10).json() == {"success": True},
        10,
        "the new lock store to serve",
    )
    answer = httpx.post(converse_url, json=ask, timeout=10)
    assert answer.json()["outputs"] == [{"result": "hello"}]
    meta = httpx.get(f"{caller.base}/v1.0/metadata", timeout=10).json()["components"]
    assert {"hotlock", "hotllm"} <= {c["name"] for c in meta}

    (resources / "blocks.yaml").unlink()
    wait_until(
        lambda: httpx.post(converse_url, json=ask, timeout=10).status_code == 400,
        10,
        "the conversation component to be gone",
    )
    gone = httpx.post(lock_url, json=lock, timeout=10)
    assert (gone.status_code, gone.json()["errorCode"]) == (500, "ERR_LOCK_STORE_NOT_CONFIGURED")


def test_an_edited_access_control_applies_to_the_callee_without_a_restart(mesh):
    caller, _, _, config = mesh
    assert invoke(caller, "ok").status_code == 200
    config.write_text(ACCESS.format(action="deny"))
    # Kept-alive connections to the old listener finish within Envoy's drain time (2 s):
    # then every call is denied.
    wait_until(
        lambda: all(invoke(caller, "ok").status_code == 403 for _ in range(5)),
        10,
        "the deny to apply to every call",
    )
    denied = invoke(caller, "ok")
    assert denied.status_code == 403
    assert denied.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    config.write_text(ACCESS.format(action="allow"))
    wait_until(lambda: invoke(caller, "ok").status_code == 200, 10, "the allow to apply")
