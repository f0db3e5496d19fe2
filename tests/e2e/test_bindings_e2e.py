"""Bindings through a real `tandem run` (issue 17).

Input: a cron binding ticking every second reaches the app at its route; a tick the app
refuses (500) is retried under the binding's inbound Resiliency policy; a binding the app
does not serve (OPTIONS 404) is left alone, quietly. Output: a localstorage round trip and
Dapr's errors answer alike through both HTTP doors (HTTP/1.1 and ext_proc).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import (
    APPS,
    Sidecar,
    distinct_free_ports,
    json_lines,
    start_app_sidecar,
    start_sidecar,
    wait_until,
)

RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: ticks}}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {{name: schedule, value: "@every 1s"}}
  - {{name: route, value: /cron-ticks}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: flaky}}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {{name: schedule, value: "@every 1s"}}
  - {{name: direction, value: input}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: unserved}}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {{name: schedule, value: "@every 1s"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: legacy}}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {{name: schedule, value: "@every 1s"}}
  - {{name: direction, value: input}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: statestore}}
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: files}}
spec:
  type: bindings.localstorage
  version: v1
  metadata:
  - {{name: rootPath, value: "{root}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: redeliver}}
spec:
  policies:
    retries: {{quick: {{policy: constant, duration: 50ms, maxRetries: 3}}}}
  targets:
    components:
      flaky:
        inbound: {{retry: quick}}
"""
TRANSPORTS = ("http", "ext_proc")


@pytest.fixture(scope="module")
def setup(tandem_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    resources = tmp_path_factory.mktemp("res")
    root = tmp_path_factory.mktemp("files")
    (resources / "bindings.yaml").write_text(RESOURCES.format(root=root))
    log = tandem_home / "binding-app.jsonl"
    (app_port,) = distinct_free_ports(1)
    sidecars: dict[str, Sidecar] = {}
    try:
        for transport in TRANSPORTS:
            extra: tuple[str, ...] = (
                "--api-transport",
                transport,
                "--resources-path",
                str(resources),
            )
            command = None
            if transport == "http":  # one app is enough for the input side
                extra += ("--app-port", str(app_port))
                command = [sys.executable, str(APPS / "binding_app.py"), str(app_port), str(log)]
            sidecars[transport] = start_sidecar(
                tandem_home, f"bind-{transport.replace('_', '-')}", *extra, command=command
            )
        yield sidecars, log, root
    finally:
        for s in sidecars.values():
            s.stop()


def test_cron_ticks_reach_the_app_at_its_route(setup: tuple) -> None:
    _, log, _ = setup

    def ticks() -> list[dict]:
        return [r for r in json_lines(log) if r["method"] == "POST" and r["path"] == "/cron-ticks"]

    wait_until(lambda: len(ticks()) >= 3, 30, "three cron ticks at /cron-ticks")
    first = ticks()[0]
    assert first["headers"]["content-type"] == "application/json"
    assert "readtimeutc" in first["headers"]
    sidecar = setup[0]["http"]
    scraped = httpx.get(f"http://127.0.0.1:{sidecar.record()['metrics_port']}/metrics", timeout=10)
    assert (
        'dapr_component_input_binding_count{app_id="bind-http",component="ticks",'
        'namespace="default",success="true"}'
    ) in scraped.text
    probes = [r for r in json_lines(log) if r["method"] == "OPTIONS"]
    assert {"/cron-ticks", "/flaky", "/unserved"} <= {r["path"] for r in probes}


def test_a_refused_tick_is_retried_and_an_unserved_binding_is_ignored(setup: tuple) -> None:
    sidecars, log, _ = setup

    def retried() -> bool:
        flaky = [r for r in json_lines(log) if r["path"] == "/flaky" and r["method"] == "POST"]
        by_tick: dict[str, list[int]] = {}
        for r in flaky:
            by_tick.setdefault(r["headers"]["readtimeutc"], []).append(r["status"])
        return any(statuses == [500, 200] for statuses in by_tick.values())

    wait_until(retried, 30, "a tick refused with 500, then taken on its retry")
    assert not [r for r in json_lines(log) if r["method"] == "POST" and r["path"] == "/unserved"]
    noisy = [
        line
        for line in sidecars["http"].text().splitlines()
        if "unserved" in line and ("WARNING" in line or "ERROR" in line)
    ]
    assert not noisy, noisy


def test_the_apps_legacy_answer_saves_state_and_calls_output_bindings(setup: tuple) -> None:
    sidecars, _, root = setup
    base = sidecars["http"].base

    def saved() -> bool:
        r = httpx.get(f"{base}/v1.0/state/statestore/from-binding", timeout=10)
        return r.status_code == 200 and r.json() == {"n": 1}

    wait_until(saved, 30, "the state the app's answer asked for")
    wait_until(
        lambda: any(p.read_text() == "via app response" for p in root.iterdir() if p.is_file()),
        30,
        "the file the app's answer sent to the files binding",
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_output_binding_round_trip_and_errors_through_both_doors(
    setup: tuple, transport: str
) -> None:
    sidecars, _, root = setup
    base = f"{sidecars[transport].base}/v1.0/bindings"
    name = f"{transport}.txt"
    r = httpx.post(
        f"{base}/files",
        json={"operation": "create", "data": "hi there", "metadata": {"fileName": name}},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"fileName": name}
    assert (root / name).read_text() == "hi there"
    r = httpx.put(
        f"{base}/files", json={"operation": "get", "metadata": {"fileName": name}}, timeout=10
    )
    assert (r.status_code, r.text) == (200, "hi there")
    r = httpx.post(
        f"{base}/files", json={"operation": "delete", "metadata": {"fileName": name}}, timeout=10
    )
    assert r.status_code == 204

    for binding, body, status, code in (
        ("nope", {"operation": "get"}, 500, "ERR_INVOKE_OUTPUT_BINDING"),
        ("files", {"operation": "explode"}, 500, "ERR_INVOKE_OUTPUT_BINDING"),
        (
            "files",
            {"operation": "create", "metadata": {"fileName": "../x"}},
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
        ),
        ("ticks", {"operation": "get"}, 500, "ERR_INVOKE_OUTPUT_BINDING"),
    ):
        r = httpx.post(f"{base}/{binding}", json=body, timeout=10)
        assert (r.status_code, r.json()["errorCode"]) == (status, code), (binding, r.text)
    r = httpx.post(f"{base}/files", content=b"{oops", timeout=10)
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
    port = sidecars[transport].record()["metrics_port"]
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'component="files",namespace="default",operation="create",success="true"' in scraped
    md = httpx.get(f"{sidecars[transport].base}/v1.0/metadata", timeout=10).json()
    comps = {c["name"]: c for c in md["components"]}
    assert comps["files"]["type"] == "bindings.localstorage"
    assert comps["files"]["capabilities"] == ["OUTPUT_BINDING"]
    assert comps["flaky"]["capabilities"] == ["INPUT_BINDING"]


HOT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: hot}}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {{name: schedule, value: "@every 1s"}}
  - {{name: route, value: {route}}}
"""
WITNESS = HOT.replace("name: hot", "name: witness").format(route="/witness")


def test_input_bindings_follow_hot_reload(tandem_home: Path, tmp_path: Path) -> None:
    """An input binding added, changed and removed while the sidecar runs: it starts
    reaching the app, moves to its new route (the old one gets nothing more), and stops."""
    resources = tmp_path / "res"
    resources.mkdir()
    (resources / "witness.yaml").write_text(WITNESS)
    log = tmp_path / "app.jsonl"
    sidecar = start_app_sidecar(
        tandem_home, "bind-hot", APPS / "binding_app.py", "--resources-path", str(resources),
        app_args=[str(log)],
    )  # fmt: skip
    hot = resources / "hot.yaml"

    def posts(path: str) -> int:
        return sum(1 for r in json_lines(log) if r["method"] == "POST" and r["path"] == path)

    def after_witness_ticks(n: int) -> None:
        target = posts("/witness") + n
        wait_until(lambda: posts("/witness") >= target, 30, f"{n} more witness ticks")

    try:
        hot.write_text(HOT.format(route="/hot-a"))
        wait_until(lambda: posts("/hot-a") >= 1, 30, "the added binding's first tick")

        hot.write_text(HOT.format(route="/hot-b"))
        wait_until(lambda: posts("/hot-b") >= 1, 30, "a tick at the changed route")
        at_a = posts("/hot-a")
        after_witness_ticks(2)
        assert posts("/hot-a") == at_a  # the replaced binding reads no more

        hot.unlink()
        wait_until(
            lambda: "hot" not in {c["name"] for c in httpx.get(
                f"{sidecar.base}/v1.0/metadata", timeout=5).json()["components"]},
            30, "the removed binding gone from the metadata",
        )  # fmt: skip
        at_b = posts("/hot-b")
        after_witness_ticks(2)
        assert posts("/hot-b") == at_b
    finally:
        sidecar.stop()
