"""Two replicas of one workflow app (two sidecars, two SDK workers, one app id) split the
instances between them through actor placement: every instance runs at one replica only,
calls made at the other are forwarded, listing shows both replicas' instances, and when
one replica's sidecar is killed (kill -9) its instances complete at the other, no
committed step running again."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus
from harness import APPS, Sidecar, json_lines, start_sidecar, wait_until, workflow_output
from pubsub_harness import runtime_pid

APP_ID = "wfrep"
WORKFLOW_TYPE = f"dapr.internal.default.{APP_ID}.workflow"
WAIT = 90


def release(log: Path) -> Path:
    """The file whose creation ends every `slow` step (tests/apps/workflow_app.py)."""
    return log.with_name("release-slow-steps")


def placed(sidecar: Sidecar) -> bool:
    """The sidecar's committed placement table gives it a share of the workflow type."""
    try:
        got = httpx.get(f"{sidecar.base}/v1.0/metadata", timeout=2).json()
    except httpx.HTTPError:
        return False
    return any(a.get("type") == WORKFLOW_TYPE for a in got.get("actors") or [])


@pytest.fixture(scope="module")
def replicas(tandem_home: Path) -> Iterator[tuple[Sidecar, Sidecar, Path]]:
    log = tandem_home / "replicas.jsonl"
    log.touch()
    started: list[Sidecar] = []
    try:
        for name in ("r1", "r2"):
            started.append(
                start_sidecar(
                    tandem_home,
                    APP_ID,
                    command=[sys.executable, str(APPS / "workflow_app.py")],
                    env={
                        "WF_LOG": str(log),
                        "REPLICA": name,
                        "WF_RELEASE": str(release(log)),
                        # Every instance may be held in its long step at one replica.
                        "WF_THREADS": "16",
                    },
                )
            )
        for sidecar in started:
            wait_until(lambda s=sidecar: placed(s), 60, "both replicas in the placement table")
        yield started[0], started[1], log
    finally:
        for sidecar in started:
            sidecar.stop()


def test_instances_are_split_and_each_step_runs_once(
    replicas: tuple[Sidecar, Sidecar, Path],
) -> None:
    r1, r2, log = replicas
    ids = [f"split-{i}" for i in range(10)]
    with contextlib.closing(DaprWorkflowClient(host="127.0.0.1", port=str(r1.grpc_port))) as c:
        for i in ids:
            c.schedule_new_workflow(workflow="chain", input=i, instance_id=i)
        for i in ids:
            assert workflow_output(c, i, WAIT) == f"{i}+++"
    for i in ids:
        steps = json_lines(log, activity="step", instance=i)
        assert [r["value"] for r in steps] == [i, f"{i}+", f"{i}++"]
        assert len({r["replica"] for r in steps}) == 1  # one replica ran the whole instance
    assert {r["replica"] for r in json_lines(log, activity="step")} == {"r1", "r2"}

    # Replica 2 answers for every instance too (forwarded to the owner when not its own),
    # and its listing shows both replicas' instances.
    with contextlib.closing(DaprWorkflowClient(host="127.0.0.1", port=str(r2.grpc_port))) as c:
        for i in ids:
            state = c.get_workflow_state(i)
            assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    listed = httpx.get(
        f"{r2.base}/v1.0/workflows/dapr", params={"name": "chain"}, timeout=10
    ).json()
    assert {x["instanceID"] for x in listed["instances"]} >= set(ids)


def test_a_killed_replicas_instances_complete_at_the_other(
    replicas: tuple[Sidecar, Sidecar, Path],
) -> None:
    r1, r2, log = replicas
    ids = [f"kill-{i}" for i in range(10)]
    with contextlib.closing(DaprWorkflowClient(host="127.0.0.1", port=str(r1.grpc_port))) as c:
        for i in ids:
            # Each long step lasts until the test releases it (at most 60 s).
            c.schedule_new_workflow(workflow="long", input=60.0, instance_id=i)
        # Every instance has committed its first step and is in its long second one.
        wait_until(
            lambda: all(json_lines(log, activity="slow-start", instance=i) for i in ids),
            WAIT,
            "every instance's long step",
        )
        # Those in their long step at replica 2 (held there until released) when it dies.
        assert not json_lines(log, activity="slow-end")
        on_r2 = {r["instance"] for r in json_lines(log, activity="slow-start", replica="r2")}
        assert on_r2, "replica 2 runs some of the instances"
        os.kill(runtime_pid(r2), signal.SIGKILL)
        release(log).touch()
        for i in ids:
            assert workflow_output(c, i, WAIT) == "before++"
    for i in ids:
        # The first step was committed before the long one began: it never runs again. The
        # last may have been in flight at replica 2 when it died (its result lost, so run
        # again at replica 1: an activity is at least once).
        values = [r["value"] for r in json_lines(log, activity="step", instance=i)]
        assert values.count("before") == 1 and set(values) == {"before", "before+"}, values
    # Replica 2's instances still in their long step finished at replica 1, the last step
    # once (it could not have started before the kill).
    for i in on_r2:
        last = json_lines(log, activity="step", instance=i, value="before+")
        assert [r["replica"] for r in last] == ["r1"], last
