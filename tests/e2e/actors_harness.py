"""Shared by the actor end-to-end tests: the SDK client app and the actors' call log."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from harness import APPS, Sidecar, child_processes, run_sdk_app, start_sidecar

from tandem.cli.ports import free_port


def actor_host(
    home: Path, app_id: str, replica: str, log: Path, *extra: str, env: dict[str, str] | None = None
) -> Sidecar:
    """A sidecar whose app is tests/apps/actor_app.py (actor type Counter)."""
    return start_sidecar(
        home,
        app_id,
        "--app-port",
        str(free_port()),
        *extra,
        command=[sys.executable, str(APPS / "actor_app.py")],
        env={"ACTOR_LOG": str(log), "REPLICA": replica, **(env or {})},
    )


def client(sidecar: Sidecar, *args: str, env: dict[str, str] | None = None) -> object:
    """Run tests/apps/actor_client.py against ``sidecar``; its JSON answer."""
    done = run_sdk_app(sidecar, APPS / "actor_client.py", *args, env=env)
    if done.returncode != 0:
        raise ClientFailed(done.stdout + done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


class ClientFailed(AssertionError):
    """The SDK client app failed; its output is the message."""


def children(pid: int) -> list[int]:
    return [child for child, _ in child_processes(pid)]


def kill_replica(sidecar: Sidecar) -> None:
    """kill -9 a host's runtime and app (its `tandem run` then stops its Envoy)."""
    import signal

    for pid in children(sidecar.proc.pid):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"tandem.ext_proc" in cmd or b"actor_app.py" in cmd:
                os.kill(pid, signal.SIGKILL)
