"""Resiliency for component targets, in the runtime: a state store behind a retry policy
rides out a Redis restart; the same store without one fails at once."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from harness import start_sidecar, wait_until

from servers import RedisProcess, run_redis_process

COMPONENTS = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: {name}}}
spec:
  type: state.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "127.0.0.1:{port}"}}
---
"""

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: stores}
spec:
  policies:
    timeouts: {attempt: 2s}
    retries:
      patient: {policy: constant, duration: 200ms, maxRetries: 100}
  targets:
    components:
      guarded: {outbound: {timeout: attempt, retry: patient}}
"""


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    with run_redis_process(tmp_path_factory.mktemp("redis")) as process:
        yield process


@pytest.fixture(scope="module")
def keeper(tandem_home, tmp_path_factory, redis: RedisProcess):
    resources = tmp_path_factory.mktemp("res")
    (resources / "stores.yaml").write_text(
        "".join(COMPONENTS.format(name=n, port=redis.port) for n in ("guarded", "bare"))
        + RESILIENCY
    )
    sidecar = start_sidecar(tandem_home, "keeper", "--resources-path", str(resources))
    yield sidecar
    sidecar.stop()


def save(sidecar, store: str, value: str) -> httpx.Response:
    return httpx.post(
        f"{sidecar.base}/v1.0/state/{store}",
        json=[{"key": "k", "value": value}],
        timeout=60,
    )


def retries_counted(sidecar) -> float:
    port = sidecar.record()["metrics_port"]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.search(
        r'dapr_resiliency_activations_total\{app_id="keeper",flow_direction="outbound",'
        r'policy="retry",target="component_guarded"\} ([0-9.]+)',
        metrics,
    )
    return float(found.group(1)) if found else 0.0


def test_a_store_with_retries_recovers_from_a_redis_restart(keeper, redis: RedisProcess):
    assert save(keeper, "guarded", "before").status_code == 204
    redis.stop()
    # Without a policy the outage is the caller's problem at once.
    wait_until(lambda: save(keeper, "bare", "x").status_code == 500, 30, "bare to fail")
    result: dict[str, httpx.Response] = {}
    sent = threading.Event()

    def during_outage() -> None:
        sent.set()
        result["r"] = save(keeper, "guarded", "during")

    worker = threading.Thread(target=during_outage)
    worker.start()
    sent.wait(10)
    # Redis is still down for the request in flight (the bare store says so), which the
    # runtime retries, counting each retry as Dapr counts them; then Redis returns.
    assert save(keeper, "bare", "x").status_code == 500
    wait_until(lambda: retries_counted(keeper) >= 1, 30, "a retry of the guarded save")
    redis.start()
    worker.join(60)
    assert result["r"].status_code == 204, result["r"].text
    got = httpx.get(f"{keeper.base}/v1.0/state/guarded/k", timeout=10)
    assert got.json() == "during"
