"""The Jobs API through a real `tandem run` (issue 17), on the control plane's scheduler.

A ``dueTime`` job fires once; ``@every 1s`` with ``repeats: 3`` fires three times; delete
stops a job; the failure policy decides how often a refused trigger is retried; two
replicas of one app share each due time (it fires once in total); a job survives
``kill -9`` of the runtime and of the control plane; bad input gets Dapr's errors through
both HTTP doors.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from actors_harness import children
from harness import APPS, Sidecar, start_app_sidecar, tandem_cli, wait_until

TRANSPORTS = ("http", "ext_proc")


def app_sidecar(home: Path, app_id: str, log: Path, *extra: str) -> Sidecar:
    return start_app_sidecar(home, app_id, APPS / "binding_app.py", *extra, app_args=[str(log)])


def triggers(name: str, *logs: Path) -> list[dict]:
    out = []
    for log in logs:
        if log.exists():
            out += [
                json.loads(line)
                for line in log.read_text().splitlines()
                if line.strip() and f'"/job/{name}"' in line
            ]
    return out


@pytest.fixture(scope="module")
def mesh(tandem_home: Path) -> Iterator[dict[str, tuple[Sidecar, Path]]]:
    started: dict[str, tuple[Sidecar, Path]] = {}
    try:
        for i, transport in enumerate(TRANSPORTS):
            log = tandem_home / f"jobs-{i}.jsonl"
            started[transport] = (
                app_sidecar(tandem_home, "jobs-app", log, "--api-transport", transport),
                log,
            )
        yield started
    finally:
        for sidecar, _ in started.values():
            sidecar.stop()


def schedule(sidecar: Sidecar, name: str, body: dict) -> httpx.Response:
    return httpx.post(f"{sidecar.base}/v1.0-alpha1/jobs/{name}", json=body, timeout=10)


def test_a_due_time_job_fires_once_with_its_data(mesh) -> None:
    sidecar, log = mesh["http"]
    other_log = mesh["ext_proc"][1]
    r = schedule(sidecar, "once", {"dueTime": "2s", "data": {"order": 7}})
    assert r.status_code == 204, r.text
    got = httpx.get(f"{sidecar.base}/v1.0-alpha1/jobs/once", timeout=10).json()
    assert got == {"name": "once", "dueTime": "2s", "data": {"order": 7}}
    wait_until(lambda: triggers("once", log, other_log), 20, "the job's trigger")
    time.sleep(2)  # a window for a second trigger that must not come
    fired = triggers("once", log, other_log)
    assert len(fired) == 1
    assert json.loads(fired[0]["body"]) == {"order": 7}
    assert fired[0]["headers"]["content-type"] == "application/json"
    r = httpx.get(f"{sidecar.base}/v1.0-alpha1/jobs/once", timeout=10)
    assert (r.status_code, r.json()["errorCode"]) == (404, "DAPR_SCHEDULER_GET_JOB")


def test_every_second_with_three_repeats_fires_three_times_across_replicas(mesh) -> None:
    # Both sidecars are replicas of jobs-app: each due time goes to one of them.
    (a, log_a), (_, log_b) = mesh["http"], mesh["ext_proc"]
    r = schedule(a, "thrice", {"schedule": "@every 1s", "repeats": 3, "data": "x"})
    assert r.status_code == 204, r.text
    wait_until(lambda: len(triggers("thrice", log_a, log_b)) >= 3, 20, "three triggers")
    time.sleep(2.5)
    assert len(triggers("thrice", log_a, log_b)) == 3


def test_delete_stops_a_job(mesh) -> None:
    (a, log_a), (b, log_b) = mesh["http"], mesh["ext_proc"]
    assert schedule(b, "ticker", {"schedule": "@every 1s"}).status_code == 204
    listed = httpx.get(f"{a.base}/v1.0-alpha1/jobs", timeout=10).json()["jobs"]
    (ticker,) = [j for j in listed if j["name"] == "ticker"]
    assert ticker["schedule"] == "@every 1s" and ticker["nextFireTime"]
    cli = tandem_cli(a.home, "jobs", "list", "-o", "json", timeout=30)
    assert cli.returncode == 0, cli.stderr
    assert {"appId": "jobs-app", "name": "ticker"}.items() <= next(
        j for j in json.loads(cli.stdout) if j["name"] == "ticker"
    ).items()
    wait_until(lambda: triggers("ticker", log_a, log_b), 20, "a first trigger")
    assert httpx.delete(f"{a.base}/v1.0/jobs/ticker", timeout=10).status_code == 204
    after = len(triggers("ticker", log_a, log_b))
    time.sleep(2.5)
    assert len(triggers("ticker", log_a, log_b)) <= after + 1  # one may have been in flight
    assert httpx.get(f"{a.base}/v1.0-alpha1/jobs/ticker", timeout=10).status_code == 404


def test_the_failure_policy_decides_the_retries(mesh) -> None:
    (a, log_a), (_, log_b) = mesh["http"], mesh["ext_proc"]
    policy = {"constant": {"interval": "0.2s", "maxRetries": 2}}
    assert schedule(a, "fail-thrice", {"dueTime": "0s", "failurePolicy": policy}).status_code == 204
    assert (
        schedule(a, "fail-once", {"dueTime": "0s", "failurePolicy": {"drop": {}}}).status_code
        == 204
    )
    wait_until(lambda: len(triggers("fail-thrice", log_a, log_b)) >= 3, 20, "three attempts")
    time.sleep(2)
    assert len(triggers("fail-thrice", log_a, log_b)) == 3  # the first try and 2 retries
    assert len(triggers("fail-once", log_a, log_b)) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("bad-cron", {"schedule": "every day"}, 400, "DAPR_SCHEDULER_SCHEDULE_JOB"),
        ("bad-due", {"dueTime": "soon"}, 400, "DAPR_SCHEDULER_SCHEDULE_JOB"),
        (
            "bad-policy",
            {"dueTime": "1h", "failurePolicy": {"sometimes": {}}},
            400,
            "DAPR_SCHEDULER_SCHEDULE_JOB",
        ),
        ("no-when", {"data": 1}, 400, "DAPR_SCHEDULER_SCHEDULE_EMPTY"),
        ("empty", {}, 400, "DAPR_SCHEDULER_EMPTY"),
        ("named", {"name": "x", "dueTime": "1s"}, 400, "DAPR_SCHEDULER_JOB_NAME"),
        ("bad%7C%7Cname", {"dueTime": "1s"}, 400, "DAPR_SCHEDULER_JOB_NAME"),
        ("neg", {"dueTime": "1s", "repeats": -1}, 400, "ERR_MALFORMED_REQUEST"),
    ],
)
def test_bad_jobs_get_daprs_errors_through_both_doors(mesh, transport, name, body, status, code):
    sidecar, _ = mesh[transport]
    r = schedule(sidecar, name, body)
    assert (r.status_code, r.json()["errorCode"]) == (status, code), r.text
    r = httpx.post(f"{sidecar.base}/v1.0-alpha1/jobs/x", content=b"{oops", timeout=10)
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
    r = schedule(sidecar, "dup", {"dueTime": "1h"})
    assert r.status_code == 204
    r = schedule(sidecar, "dup", {"dueTime": "1h", "overwrite": False})
    assert (r.status_code, r.json()["errorCode"]) == (409, "DAPR_SCHEDULER_SCHEDULE_JOB")
    assert schedule(sidecar, "dup", {"dueTime": "1h", "overwrite": True}).status_code == 204
    assert httpx.delete(f"{sidecar.base}/v1.0-alpha1/jobs/dup", timeout=10).status_code == 204


def _kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_job_fires_after_kill_9_of_runtime_and_control_plane(tandem_home: Path) -> None:
    log = tandem_home / "durable.jsonl"
    first = app_sidecar(tandem_home, "durable-app", log)
    try:
        assert (
            schedule(first, "survivor", {"dueTime": "8s", "data": "still here"}).status_code == 204
        )
        for pid in children(first.proc.pid):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"tandem.ext_proc" in cmd or b"binding_app.py" in cmd:
                    _kill9(pid)
        _kill9(json.loads((tandem_home / "controlplane.json").read_text())["pid"])
        first.proc.wait(30)
    finally:
        first.stop()
    second = app_sidecar(tandem_home, "durable-app", log)
    try:
        wait_until(lambda: triggers("survivor", log), 40, "the job after the restarts")
        time.sleep(2)
        fired = triggers("survivor", log)
        assert len(fired) == 1
        assert json.loads(fired[0]["body"]) == "still here"
        # Tandem's own metric: how late each trigger reached a runtime (here: seconds).
        port = second.record()["metrics_port"]
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'tandem_jobs_trigger_lateness_count{app_id="durable-app"} 1.0' in scraped
    finally:
        second.stop()
