"""Churn: three replicas of one actor host under continuous calls to 200 actors while
replicas stop, start and die (kill -9) and the control plane is killed: no two turns of
one actor ever overlap (the per-actor call logs of every replica), and no acknowledged
state write is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from actors_harness import actor_host, kill_replica
from harness import APPS, start_sidecar, wait_until

ACTORS = 200
SECONDS = 40


def host(home: Path, replica: str, log: Path):
    return actor_host(home, "churn-host", replica, log)


def turns_overlap(log: Path) -> list[str]:
    """Every pair of turns of one actor that overlapped in time, across all replicas."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    open_turns: dict[tuple[str, str], float] = {}
    for line in log.read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if e.get("method") != "Add":
            continue
        key = (e["id"], e["replica"])
        if e["event"] == "enter":
            open_turns[key] = e["t"]
        elif e["event"] == "exit" and key in open_turns:
            spans.setdefault(e["id"], []).append((open_turns.pop(key), e["t"], e["replica"]))
    problems = []
    for actor_id, turns in spans.items():
        turns.sort()
        last_end, last_replica = float("-inf"), ""
        for start, end, replica in turns:
            if start < last_end:
                problems.append(
                    f"{actor_id}: {last_replica} until {last_end:.4f}, {replica} from {start:.4f}"
                )
            if end > last_end:
                last_end, last_replica = end, replica
    return problems


def test_churn_never_runs_one_actor_twice_and_loses_no_acknowledged_write(tandem_home):
    log = tandem_home / "churn.jsonl"
    r1, r2, r3 = (host(tandem_home, f"r{i}", log) for i in (1, 2, 3))
    caller = start_sidecar(tandem_home, "churn-caller")
    env = {
        **os.environ,
        "DAPR_HTTP_PORT": str(caller.http_port),
        "DAPR_GRPC_PORT": str(caller.grpc_port),
    }
    client = subprocess.Popen(
        [sys.executable, str(APPS / "actor_churn_client.py"), str(SECONDS), "8", str(ACTORS)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    replicas = [r1, r2, r3]

    def at(second: float) -> None:
        wait_until(lambda: time.monotonic() - started >= second, SECONDS, f"t={second}")

    try:
        at(6)
        r2.stop()  # a graceful stop: its actors drain and move
        at(12)
        r4 = host(tandem_home, "r4", log)
        replicas.append(r4)
        at(20)
        kill_replica(r3)  # kill -9: its actors move after its lease runs out
        at(27)
        cp_pid = json.loads((tandem_home / "controlplane.json").read_text())["pid"]
        os.kill(cp_pid, signal.SIGKILL)  # the sidecars' watchers restart it
        out, err = client.communicate(timeout=SECONDS + 120)
        assert client.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])

        assert turns_overlap(log) == []
        # Every acknowledged Add is in the actor's saved state (the state API of a live host).
        lost = {}
        for actor_id, acked in summary["acked"].items():
            r = httpx.get(f"{r1.base}/v1.0/actors/Counter/{actor_id}/state/n", timeout=30)
            total = r.json() if r.status_code == 200 else 0
            if not acked <= total <= summary["attempts"][actor_id]:
                lost[actor_id] = (acked, total, summary["attempts"][actor_id])
        assert lost == {}
        # The churn did real work: many calls acknowledged, actors moved between replicas.
        assert sum(summary["acked"].values()) > 500
        served_by: dict[str, set[str]] = {}
        for line in log.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if e.get("event") == "enter":
                served_by.setdefault(e["id"], set()).add(e["replica"])
        assert sum(1 for rs in served_by.values() if len(rs) > 1) > 20
    finally:
        if client.poll() is None:
            client.kill()
        for s in (caller, *replicas):
            s.stop()
