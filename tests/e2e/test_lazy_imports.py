"""A sidecar loads what its app uses, when it uses it (issue 21, footprint): the idle
supervisor (`tandem run`) and runtime load neither the workflow SDK nor `cryptography`, the
control plane's modules, aiohttp or Envoy's config translators; what `tandem run` keeps for
the app's life loads no asyncio; the first workflow call loads the workflow engine and is
answered as before. A sidecar with an app that subscribes (its runtime calls the app at start
and delivers to it) does without aiohttp too: the app channel is our own small client.

What each process imported is read from Python's own import trace
(``PYTHONPROFILEIMPORTTIME=1`` reaches every process `tandem run` starts; the runtime's
lands in its log), so the real entry points run unchanged."""

from __future__ import annotations

from pathlib import Path

import httpx
from harness import start_sidecar, wait_until
from pubsub_harness import Records, start_subscriber, subscription

# Loaded by a sidecar only for an app that uses them (or never, for the control plane's).
HEAVY = (
    "dapr.ext.workflow",
    "cryptography",
    "jwcrypto",
    "tandem.placement.service",
    "tandem.blocks.workflows.engine",
    "aiohttp",
    "tandem.xds.translate",
)
# What a sidecar's start-up loads only when it is used (issue 21, start): the schedule
# parser's libraries with the first actor timer, the traffic kinds' parsers with such a
# document, Envoy's ext_proc protos with the first ext_proc stream (`tandem run` gives Envoy
# the HTTP/1.1 door by default).
START_LAZY = (
    "croniter",
    "isodate",
    "tandem.scheduler.schedule",
    "tandem.resources.httproute",
    "tandem.resources.traffic_policy",
    "envoy.service.ext_proc.v3.external_processor_pb2",
    "tandem.ext_proc.extproc",
)
# The supervisor lives as long as the app: none of the sidecar's machinery either.
SUPERVISOR_ALSO = ("grpc", "tandem.resources", "tandem.blocks.secrets.endpoints")
# What `tandem run` keeps for the app's life (tandem.cli.watch) does without the start-up's.
WATCHER_NEVER = ("asyncio", "argparse", "tandem.cli.run", "tandem.envoy", "yaml")


def imported(text: str) -> set[str]:
    """Module names from a ``-X importtime`` trace."""
    out = set()
    for line in text.splitlines():
        if line.startswith("import time:") and "|" in line:
            out.add(line.rsplit("|", 1)[1].strip())
    return out


def test_an_idle_sidecar_loads_what_its_app_uses_and_workflows_on_first_call(
    tandem_home: Path,
) -> None:
    sidecar = start_sidecar(tandem_home, "lazy", env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        wait_until(lambda: "sidecar lazy ready" in sidecar.text(), 30, "start-up to finish")
        base = sidecar.base
        # Some ordinary traffic: state and publish on the default components.
        saved = httpx.post(f"{base}/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
        assert saved.status_code == 204
        assert httpx.get(f"{base}/v1.0/state/statestore/k").json() == 1
        published = httpx.post(f"{base}/v1.0/publish/pubsub/orders", json={"n": 1})
        assert published.status_code == 204
        runtime_log = tandem_home / "logs" / "lazy.runtime.log"

        runtime = imported(runtime_log.read_text(errors="replace"))
        supervisor = imported(sidecar.text())
        assert "tandem.ext_proc.runtime" in runtime  # the trace is there at all
        assert "tandem.cli.run" in supervisor
        assert sorted(m for m in HEAVY + START_LAZY if m in runtime) == []
        assert sorted(m for m in HEAVY + SUPERVISOR_ALSO if m in supervisor) == []
        # The watcher's imports come between the start-up's last line and its own first.
        output = sidecar.text()
        watcher = imported(output[output.index("envoy ready") : output.index("sidecar lazy ready")])
        assert "tandem.cli.exits" in watcher  # the watcher (run as __main__) imported it
        assert sorted(m for m in WATCHER_NEVER if m in watcher) == []

        # The first workflow call builds the engine (loading the SDK) and answers as Dapr
        # (an id Dapr refuses: no worker is needed to answer that).
        refused = httpx.post(
            f"{base}/v1.0-beta1/workflows/dapr/wf/start", params={"instanceID": "a b"}
        )
        assert refused.status_code == 400
        assert refused.json()["errorCode"] == "ERR_INSTANCE_ID_INVALID"
        wait_until(
            lambda: "dapr.ext.workflow" in imported(runtime_log.read_text(errors="replace")),
            10,
            "the workflow SDK to load on the first workflow call",
        )
    finally:
        sidecar.stop()


def test_a_sidecar_whose_app_subscribes_delivers_without_aiohttp(tandem_home: Path) -> None:
    records = Records(tandem_home / "lazy-sub.jsonl")
    sidecar = start_subscriber(
        tandem_home,
        "lazy-sub",
        [subscription("pubsub", "orders", "/orders")],
        records,
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    try:
        published = httpx.post(f"{sidecar.base}/v1.0/publish/pubsub/orders", json={"n": 1})
        assert published.status_code == 204
        # Delivered: the runtime read the app's subscriptions and called it back.
        records.wait_for(lambda r: r["path"] == "/orders")
        runtime_log = tandem_home / "logs" / "lazy-sub.runtime.log"
        runtime = imported(runtime_log.read_text(errors="replace"))
        assert "tandem.blocks.app_channel" in runtime  # the trace is there at all
        assert sorted(m for m in HEAVY if m in runtime) == []
    finally:
        sidecar.stop()
