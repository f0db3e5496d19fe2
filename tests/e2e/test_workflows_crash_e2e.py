"""Workflows survive crashes: kill -9 of the app during a long activity, kill -9 of the
sidecar between steps, and a durable timer set before a restart fires after it. Each
instance completes with the right output and every committed step ran once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dapr.ext.workflow import DaprWorkflowClient
from harness import APPS, Sidecar, json_lines, start_sidecar, wait_until, workflow_output
from pubsub_harness import runtime_pid

WAIT = 90


def start_app(sidecar: Sidecar, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DAPR_GRPC_PORT": str(sidecar.grpc_port),
        "DAPR_HTTP_PORT": str(sidecar.http_port),
        "WF_LOG": str(log),
    }
    out = open(log.with_suffix(f".{sidecar.grpc_port}.out"), "ab")  # noqa: SIM115 - the app's
    return subprocess.Popen(
        [sys.executable, str(APPS / "workflow_app.py")], env=env, stdout=out, stderr=out
    )


@pytest.fixture
def log(tandem_home: Path, request: pytest.FixtureRequest) -> Path:
    path = tandem_home / f"{request.node.name[:12]}.jsonl"
    path.touch()
    return path


def test_app_killed_during_a_long_activity(tandem_home: Path, log: Path) -> None:
    sidecar = start_sidecar(tandem_home, "wfapp")
    app = start_app(sidecar, log)
    try:
        with contextlib.closing(
            DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        ) as client:
            client.schedule_new_workflow(workflow="long", input=3.0, instance_id="app-crash")
            wait_until(lambda: json_lines(log, activity="slow-start"), WAIT, "the long activity")
            app.send_signal(signal.SIGKILL)
            app.wait(10)
            app = start_app(sidecar, log)
            assert workflow_output(client, "app-crash", WAIT) == "before++"
        # The interrupted activity ran again (at least once); committed steps once.
        assert len(json_lines(log, activity="slow-start")) == 2
        assert [r["value"] for r in json_lines(log, activity="step")] == ["before", "before+"]
    finally:
        app.kill()
        app.wait(10)
        sidecar.stop()


def test_sidecar_killed_between_steps_and_a_timer_fires_after_the_restart(
    tandem_home: Path, log: Path
) -> None:
    sidecar = start_sidecar(tandem_home, "wfcar")
    app = start_app(sidecar, log)
    try:
        with contextlib.closing(
            DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        ) as client:
            client.schedule_new_workflow(workflow="long", input=2.0, instance_id="car-crash")
            client.schedule_new_workflow(workflow="sleeper", input=3.0, instance_id="timer")
            wait_until(lambda: json_lines(log, activity="slow-start"), WAIT, "the second step")
            client.wait_for_workflow_start("timer", timeout_in_seconds=WAIT)
        os.kill(runtime_pid(sidecar), signal.SIGKILL)
        sidecar.proc.wait(30)
        app.kill()
        app.wait(10)
        assert not json_lines(log, activity="step", value="after-timer")

        sidecar = start_sidecar(tandem_home, "wfcar")
        app = start_app(sidecar, log)
        with contextlib.closing(
            DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        ) as client:
            assert workflow_output(client, "car-crash", WAIT) == "before++"
            assert workflow_output(client, "timer", WAIT) == "after-timer+"
        steps = [r["value"] for r in json_lines(log, activity="step", instance="car-crash")]
        assert steps == ["before", "before+"]
        assert len(json_lines(log, activity="step", instance="timer")) == 1
        # The timer lived in the control plane's scheduler, not in the killed runtime.
        assert "kept in memory" not in (tandem_home / "logs" / "wfcar.runtime.log").read_text()
    finally:
        app.kill()
        app.wait(10)
        sidecar.stop()


def test_configuration_limits_activities_and_purges_after_retention(
    tandem_home: Path, log: Path
) -> None:
    config = tandem_home / "wfconfig.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: wf}\n"
        "spec:\n  workflow:\n    maxConcurrentActivityInvocations: 2\n"
        "    stateRetentionPolicy: {completed: 2s}\n"
    )
    sidecar = start_sidecar(tandem_home, "wflimits", "--config", str(config))
    app = start_app(sidecar, log)
    try:
        with contextlib.closing(
            DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        ) as client:
            client.schedule_new_workflow(workflow="napfan", input=6, instance_id="limited")
            assert workflow_output(client, "limited", WAIT) == 6
            # Never more than two activities ran at once.
            events = sorted(
                (r["t"], 1 if r["at"] == "start" else -1) for r in json_lines(log, activity="nap")
            )
            running, peak = 0, 0
            for _, step in events:
                running += step
                peak = max(peak, running)
            assert peak == 2
            # The completed instance is purged once its retention runs out.
            wait_until(
                lambda: client.get_workflow_state("limited") is None, WAIT, "the retention purge"
            )
    finally:
        app.kill()
        app.wait(10)
        sidecar.stop()
