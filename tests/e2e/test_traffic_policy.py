"""Traffic policy (issue 12): HTTPRoute and BackendTrafficPolicy in the caller's
--resources-path, compiled into its Envoy, with real sidecars and hot reload.

Apps ``checkout``, ``checkout-canary`` and ``shadow`` are each a scripted app behind its own
sidecar; the app echoes the path and headers it received, including ``dapr-callee-app-id``
that the callee's Envoy sets, so every answer says which app served it. Two callers read
the same resources: one per HTTP door of the Dapr API (ext_proc and HTTP/1.1).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from harness import APPS, Sidecar, start_sidecar, wait_until

from tandem.cli.ports import free_port

ROUTES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: checkout-split}
spec:
  parentRefs: [{group: "", kind: Service, name: checkout, port: 80}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: checkout-canary, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /mirror}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}, percent: 100}
    backendRefs: [{name: checkout, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Route, value: api}]
        remove: [x-drop]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Served-By, value: checkout-split}]
    backendRefs: [{name: checkout, port: 80}]
  - backendRefs:
    - {name: checkout, port: 80, weight: 90}
    - {name: checkout-canary, port: 80, weight: 10}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: limited}
spec:
  parentRefs: [{group: "", kind: Service, name: checkout}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /limited}}]
    backendRefs: [{name: checkout}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: faulty}
spec:
  parentRefs: [{group: "", kind: Service, name: checkout}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /faulty}}]
    backendRefs: [{name: checkout}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: delayed}
spec:
  parentRefs: [{group: "", kind: Service, name: checkout}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /delayed}}]
    backendRefs: [{name: checkout}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: five-per-second}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: limited}]
  rateLimit:
    type: Local
    local: {rules: [{limit: {requests: 5, unit: Second}}]}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: abort}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: faulty}]
  faultInjection: {abort: {httpStatus: 418}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: delay}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: delayed}]
  faultInjection: {delay: {fixedDelay: 1s}}
"""

RELOADED = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reloaded}}
spec:
  parentRefs: [{{group: "", kind: Service, name: checkout}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /reload}}}}]
    backendRefs:
    - {{name: checkout, weight: {stable}}}
    - {{name: checkout-canary, weight: {canary}}}
"""

APP_IDS = ("checkout", "checkout-canary", "shadow")


@pytest.fixture(scope="module")
def mesh(tandem_home, tmp_path_factory):
    resources = tmp_path_factory.mktemp("res")
    (resources / "routes.yaml").write_text(ROUTES)
    (resources / "reload.yaml").write_text(RELOADED.format(stable=90, canary=10))
    ports = {app_id: free_port() for app_id in APP_IDS}
    apps = [
        subprocess.Popen([sys.executable, str(APPS / "scripted_app.py"), str(port)])
        for port in ports.values()
    ]
    callees = [
        start_sidecar(tandem_home, app_id, "--app-port", str(port))
        for app_id, port in ports.items()
    ]
    callers = {
        transport: start_sidecar(
            tandem_home,
            f"caller-{transport.replace('_', '-')}",
            "--resources-path",
            str(resources),
            "--api-transport",
            transport,
        )
        for transport in ("ext_proc", "http")
    }
    for caller in callers.values():
        # The canary rule answers from the canary only once the caller knows every app.
        wait_until(
            lambda caller=caller: (
                served_by(invoke(caller, "ok", {"x-canary": "yes"})) == "checkout-canary"
            ),
            60,
            "the caller's Envoy to learn the canary",
        )
        wait_until(
            lambda caller=caller: invoke(caller, "mirror/warm").status_code == 200,
            30,
            "the caller's Envoy to learn the shadow",
        )
    yield callers, ports, resources, tandem_home
    for s in (*callers.values(), *callees):
        s.stop()
    for app in apps:
        app.terminate()
        app.wait(10)


@pytest.fixture(params=["ext_proc", "http"])
def caller(mesh, request) -> Sidecar:
    return mesh[0][request.param]


def invoke(
    caller: Sidecar, method: str, headers: dict[str, str] | None = None, client=httpx
) -> httpx.Response:
    return client.get(
        f"{caller.base}/v1.0/invoke/checkout/method/{method}", headers=headers, timeout=30
    )


def served_by(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return None
    return response.json()["headers"].get("dapr-callee-app-id")


def hits(ports: dict[str, int], app_id: str) -> dict[str, int]:
    return httpx.get(f"http://127.0.0.1:{ports[app_id]}/_hits", timeout=5).json()


def test_a_90_10_split_lands_within_3_points_over_1000_calls(mesh):
    caller = mesh[0]["ext_proc"]
    with httpx.Client(timeout=30) as client:
        counts = Counter(served_by(invoke(caller, "split", client=client)) for _ in range(1000))
    assert set(counts) <= {"checkout", "checkout-canary"}, counts
    assert 70 <= counts["checkout-canary"] <= 130, counts  # 10 % ± 3 points


def test_a_header_match_sends_the_call_to_the_canary(caller):
    for _ in range(5):
        assert served_by(invoke(caller, "ok", {"x-canary": "yes"})) == "checkout-canary"


def test_a_mirrored_call_reaches_the_shadow_while_the_answer_comes_from_the_primary(mesh, caller):
    ports = mesh[1]
    key = f"m-{caller.app_id}"
    assert served_by(invoke(caller, f"mirror/{key}")) == "checkout"
    wait_until(lambda: hits(ports, "shadow").get(key) == 1, 10, "the shadow to see the copy")
    assert hits(ports, "checkout")[key] == 1


def test_rewrite_and_header_filters_are_seen_by_the_app(caller):
    r = invoke(caller, "api/things?x=1", {"x-drop": "secret", "x-keep": "kept"})
    assert r.status_code == 200
    seen = r.json()
    assert seen["path"] == "/v2/things?x=1"
    assert seen["headers"]["x-route"] == "api"
    assert seen["headers"]["x-keep"] == "kept"
    assert "x-drop" not in seen["headers"]
    assert r.headers["x-served-by"] == "checkout-split"
    assert served_by(r) == "checkout"


def test_a_local_rate_limit_answers_429_with_dapr_json(caller):
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: invoke(caller, f"limited/{i}"), range(30)))
    elapsed = time.monotonic() - started
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert {r.status_code for r in answers} <= {200, 429}
    # 5 per second: at most a bucket of 5 and 5 more per second that passed.
    assert len(answers) - len(limited) <= 5 * (int(elapsed) + 2)
    body = limited[0].json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "rate limit" in body["message"]
    assert "checkout" in body["message"]


def test_a_fault_abort_answers_its_status_and_the_app_sees_nothing(mesh, caller):
    ports = mesh[1]
    key = f"f-{caller.app_id}"
    r = invoke(caller, f"faulty/{key}")
    assert r.status_code == 418
    assert r.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert key not in hits(ports, "checkout")


def test_a_fault_delay_adds_the_delay(caller):
    started = time.monotonic()
    r = invoke(caller, "delayed/d")
    assert r.status_code == 200
    assert time.monotonic() - started >= 1.0


def test_weights_changed_during_a_run_fail_no_call(mesh):
    callers, _, resources, _ = mesh
    caller = callers["ext_proc"]
    served: list[str | None] = []
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = invoke(caller, "reload/x", client=client)
                statuses.append(r.status_code)
                served.append(served_by(r))

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        wait_until(lambda: len(statuses) >= 100, 30, "traffic before the edit")
        (resources / "reload.yaml").write_text(RELOADED.format(stable=0, canary=100))
        edited = len(served)

        def all_to_canary() -> bool:
            recent = served[max(edited, len(served) - 50) :]
            return len(recent) == 50 and set(recent) == {"checkout-canary"}

        wait_until(all_to_canary, 15, "every call to go to the canary")
        wait_until(lambda: len(statuses) >= edited + 200, 30, "traffic after the edit")
    finally:
        stop.set()
        worker.join()
    assert set(statuses) == {200}
    assert "checkout" in served[:edited]


def test_a_broken_edit_keeps_the_last_good_routing_and_names_the_field(mesh):
    callers, _, resources, home = mesh
    caller = callers["ext_proc"]
    route = resources / "reload.yaml"
    route.write_text(RELOADED.format(stable=0, canary=100))
    wait_until(
        lambda: served_by(invoke(caller, "reload/y")) == "checkout-canary", 15, "0/100 routing"
    )
    route.write_text(RELOADED.format(stable='"ten"', canary=100))
    log = home / "logs" / "controlplane.log"
    wait_until(
        lambda: "spec.rules[0].backendRefs[0].weight" in log.read_text(errors="replace"),
        10,
        "the control plane to report the broken field",
    )
    text = log.read_text(errors="replace")
    assert str(route) in text
    assert "expected an integer" in text
    for _ in range(20):
        assert served_by(invoke(caller, "reload/z")) == "checkout-canary"


MESH_WIDE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh-wide}
spec:
  parentRefs: [{group: "", kind: Service, name: checkout}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /meshwide}}]
    backendRefs: [{name: checkout-canary}]
"""


def test_a_route_in_the_home_resources_folder_applies_to_every_caller(mesh):
    callers, _, _, home = mesh
    folder = home / "resources"
    folder.mkdir(exist_ok=True)
    (folder / "mesh.yaml").write_text(MESH_WIDE)
    for caller in callers.values():
        wait_until(
            lambda caller=caller: all(
                served_by(invoke(caller, "meshwide/a")) == "checkout-canary" for _ in range(10)
            ),
            15,
            f"the mesh-wide route to reach {caller.app_id}",
        )
    (folder / "mesh.yaml").unlink()
    caller = callers["ext_proc"]
    wait_until(
        lambda: served_by(invoke(caller, "meshwide/b")) == "checkout",
        15,
        "the 90/10 split again once the mesh-wide route is gone",
    )
