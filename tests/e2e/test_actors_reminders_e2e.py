"""Durable reminders: a 1 s reminder keeps firing across a restart of its host's sidecar
and after its owner is killed (it moves with the actor); a one-shot reminder fires once."""

from __future__ import annotations

import time

import httpx
from actors_harness import actor_host, client, kill_replica
from harness import json_lines, start_sidecar, wait_until


def fires(log, actor_id: str, replica: str | None = None) -> int:
    return sum(
        1
        for e in json_lines(log)
        if e["event"] == "reminder"
        and e["id"] == actor_id
        and (replica is None or e["replica"] == replica)
    )


def test_reminders_survive_restarts_and_owner_death_and_one_shots_fire_once(tandem_home):
    log = tandem_home / "reminders.jsonl"
    h1 = actor_host(tandem_home, "rem-host", "h1", log)
    caller = start_sidecar(tandem_home, "rem-caller")
    hosts = [h1]
    try:
        client(caller, "remind", "beat-1", "1000")
        wait_until(lambda: fires(log, "beat-1") >= 2, 20, "two fires")

        # The host's sidecar restarts: the reminder was in the scheduler, not in the host.
        h1.stop()
        before = fires(log, "beat-1")
        h1b = actor_host(tandem_home, "rem-host", "h1b", log)
        hosts.append(h1b)
        wait_until(lambda: fires(log, "beat-1", "h1b") >= 2, 30, "fires after the restart")
        assert fires(log, "beat-1") >= before + 2

        # A second host joins, then the owner dies: the reminder follows its actor.
        h2 = actor_host(tandem_home, "rem-host", "h2", log)
        hosts.append(h2)
        kill_replica(h1b)
        wait_until(lambda: fires(log, "beat-1", "h2") >= 2, 40, "fires at the new owner")

        # A one-shot reminder (no period) fires exactly once.
        r = httpx.put(
            f"{h2.base}/v1.0/actors/Counter/once-1/reminders/once",
            json={"dueTime": "0.5s", "data": "b25jZQ=="},  # base64, as the SDK registers data
            timeout=10,
        )
        assert r.status_code == 204, r.text
        wait_until(lambda: fires(log, "once-1") >= 1, 20, "the one-shot reminder")
        time.sleep(2)  # a window for a second firing that must not come
        assert fires(log, "once-1") == 1
        assert (
            httpx.get(
                f"{h2.base}/v1.0/actors/Counter/once-1/reminders/once", timeout=10
            ).status_code
            == 404
        )

        # Bad reminder times get Dapr's error and the sidecar keeps serving.
        r = httpx.put(
            f"{h2.base}/v1.0/actors/Counter/x/reminders/bad",
            json={"dueTime": "soon", "period": "1s"},
            timeout=10,
        )
        assert r.status_code == 400 and r.json()["errorCode"] == "ERR_ACTOR_REMINDER_CREATE"
        assert "dueTime" in r.json()["message"]
    finally:
        for s in (caller, *hosts):
            s.stop()
