"""Resiliency for service invocation, enforced by the caller's Envoy (issue 11).

One caller holds a Resiliency for two callees served by one scripted app process:
``flaky`` (per-attempt timeout 300 ms, 3 constant retries) and ``picky`` (retries only
503, a circuit breaker opening after 3 consecutive failures for 3 s); and an HTTPEndpoint
``plain``: the same app on a third port, with no sidecar, under the ``flaky`` policies.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from harness import APPS, start_sidecar, wait_until

from tandem.cli.ports import free_port

OPEN_FOR = 3.0

RESILIENCY = f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: invoke}}
scopes: [caller]
spec:
  policies:
    timeouts: {{attempt: 300ms}}
    retries:
      three: {{policy: constant, duration: 50ms, maxRetries: 3}}
      only503: {{policy: constant, duration: 50ms, maxRetries: 3,
                 matching: {{httpStatusCodes: "503"}}}}
    circuitBreakers:
      cb: {{trip: consecutiveFailures > 2, timeout: {OPEN_FOR:.0f}s, maxRequests: 1}}
  targets:
    apps:
      flaky: {{timeout: attempt, retry: three}}
      picky: {{retry: only503, circuitBreaker: cb}}
      plain: {{timeout: attempt, retry: three}}
"""

HTTP_ENDPOINT = """\
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: plain}}
spec:
  baseUrl: http://127.0.0.1:{port}/base
  headers:
  - {{name: X-Static, value: "from-the-endpoint"}}
"""


@pytest.fixture(scope="module")
def mesh(tandem_home, tmp_path_factory):
    resources = tmp_path_factory.mktemp("res")
    (resources / "resiliency.yaml").write_text(RESILIENCY)
    ports = {"flaky": free_port(), "picky": free_port()}
    plain_port = free_port()
    (resources / "endpoint.yaml").write_text(HTTP_ENDPOINT.format(port=plain_port))
    app = subprocess.Popen(
        [sys.executable, str(APPS / "scripted_app.py"), *map(str, ports.values()), str(plain_port)]
    )
    callees = [
        start_sidecar(tandem_home, app_id, "--app-port", str(port))
        for app_id, port in ports.items()
    ]
    caller = start_sidecar(tandem_home, "caller", "--resources-path", str(resources))
    for app_id in ports:
        wait_until(
            lambda app_id=app_id: (
                httpx.get(f"{caller.base}/v1.0/invoke/{app_id}/method/ok", timeout=5).status_code
                == 200
            ),
            30,
            f"the caller's Envoy to learn about {app_id}",
        )
    yield caller, {**ports, "plain": plain_port}
    for s in (caller, *callees):
        s.stop()
    app.terminate()
    app.wait(10)


def hits(ports: dict[str, int]) -> dict[str, int]:
    port = next(iter(ports.values()))
    return httpx.get(f"http://127.0.0.1:{port}/_hits", timeout=5).json()


def invoke(caller, app_id: str, method: str) -> httpx.Response:
    return httpx.get(f"{caller.base}/v1.0/invoke/{app_id}/method/{method}", timeout=30)


def retry_count(caller, app_id: str) -> int:
    stats = caller.envoy_stats()
    # Envoy writes ':' in a stat name as '_'.
    return stats[f"cluster.app_{app_id}.upstream_rq_retry"]


def test_flaky_app_is_retried_until_it_answers(mesh):
    caller, ports = mesh
    before = retry_count(caller, "flaky")
    r = invoke(caller, "flaky", "flaky/twice/500/2")
    assert r.status_code == 200
    assert r.json()["attempt"] == 3
    assert hits(ports)["twice"] == 3
    assert retry_count(caller, "flaky") - before == 2


def test_a_4xx_is_a_failure_to_retry_without_matching(mesh):
    caller, ports = mesh
    r = invoke(caller, "flaky", "flaky/notyet/404/1")
    assert r.status_code == 200
    assert hits(ports)["notyet"] == 2


def test_slow_app_gets_dapr_json_error_after_the_per_attempt_timeouts(mesh):
    caller, ports = mesh
    started = time.monotonic()
    r = invoke(caller, "flaky", "slow/sleepy/20000")
    elapsed = time.monotonic() - started
    assert r.status_code == 500
    body = r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert body["message"].startswith("failed to invoke, id: flaky, err: ")
    # Four attempts of 300 ms and three short waits: far less than the app's 20 s.
    assert elapsed < 10
    wait_until(lambda: hits(ports).get("sleepy") == 4, 10, "the app to see 4 attempts")


def test_matching_503_does_not_retry_a_500(mesh):
    caller, ports = mesh
    r = invoke(caller, "picky", "status/plain500/500")
    assert r.status_code == 500
    assert r.json() == {"key": "plain500", "attempt": 1}  # the app's own answer
    assert hits(ports)["plain500"] == 1
    # A success first: three failures in a row would open picky's circuit breaker.
    assert invoke(caller, "picky", "ok").status_code == 200
    r = invoke(caller, "picky", "flaky/busy/503/2")
    assert r.status_code == 200
    assert hits(ports)["busy"] == 3


def test_circuit_breaker_opens_after_consecutive_failures_then_closes(mesh):
    caller, ports = mesh
    assert invoke(caller, "picky", "ok").status_code == 200  # resets the failure count
    for attempt in range(1, 4):
        r = invoke(caller, "picky", "status/broken/500")
        assert r.json() == {"key": "broken", "attempt": attempt}
    opened = time.monotonic()
    total = hits(ports)["_total"]
    # Open: answered at once by the caller's Envoy in Dapr's shape; the app sees nothing.
    while time.monotonic() - opened < OPEN_FOR - 1:
        r = invoke(caller, "picky", "ok")
        if r.status_code == 200:
            break
        assert r.status_code == 500
        assert r.json()["errorCode"] == "ERR_DIRECT_INVOKE"
        time.sleep(0.1)
    assert hits(ports)["_total"] == total
    assert time.monotonic() - opened >= OPEN_FOR - 1
    # Closed again after `timeout`: calls reach the app.
    wait_until(
        lambda: invoke(caller, "picky", "ok").status_code == 200,
        OPEN_FOR + 10,
        "the circuit to close",
    )
    assert hits(ports)["_total"] > total


def test_what_envoy_cannot_do_is_warned_at_load(mesh):
    caller, _ = mesh
    assert "maxRequests is ignored for invocations" in caller.text()


def test_http_endpoint_by_name_with_its_headers_and_the_callers_policy(mesh):
    caller, ports = mesh
    r = invoke(caller, "plain", "hello?x=1")
    assert r.status_code == 200
    seen = r.json()
    assert seen["path"] == "/base/hello?x=1"
    assert seen["headers"]["x-static"] == "from-the-endpoint"
    assert seen["headers"]["dapr-caller-app-id"] == "caller"
    # The same via the dapr-app-id header.
    r = httpx.get(f"{caller.base}/again", headers={"dapr-app-id": "plain"}, timeout=30)
    assert r.json()["path"] == "/base/again"
    # targets.apps.plain: retried as an app would be.
    r = invoke(caller, "plain", "flaky/endpoint/503/2")
    assert r.status_code == 200
    assert hits(ports)["endpoint"] == 3


def test_invoke_by_url_needs_no_resource(mesh):
    caller, ports = mesh
    url = f"http://127.0.0.1:{ports['plain']}"
    r = httpx.get(f"{caller.base}/v1.0/invoke/{url}/method/by/url?q=1", timeout=30)
    assert r.status_code == 200
    seen = r.json()
    assert seen["path"] == "/by/url?q=1"
    assert seen["headers"]["host"] == f"127.0.0.1:{ports['plain']}"
    assert "x-static" not in seen["headers"]  # the HTTPEndpoint's headers are not involved
