"""Helpers for pub/sub end-to-end tests: a recording subscriber app under `tandem run`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import APPS, Sidecar, child_processes, start_sidecar, wait_until

from tandem.cli.home import Home
from tandem.cli.ports import free_port


@dataclass
class Records:
    """The JSON lines the subscriber app writes, one per delivery it answered."""

    path: Path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        # The app may be appending right now: a last line without its newline is not whole.
        text = self.path.read_text()
        lines = text.split("\n")[:-1]
        return [json.loads(line) for line in lines if line.strip()]

    def where(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [r for r in self.all() if pred(r)]

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        return wait_until(
            lambda: (found := self.where(pred)) and len(found) >= count and found,
            timeout,
            f"{count} matching deliveries in {self.path.name}",
        )


def default_resources_with_retries(
    home: Path, every: str = "20ms", max_retries: int = 5, pubsub: str = "pubsub"
) -> Path:
    """The embedded default components (those `tandem run` uses without
    ``--resources-path``, same databases) plus a Resiliency retrying deliveries from
    ``pubsub``: without one, Dapr does not retry a failed delivery."""
    folder = home / f"res-retries-{pubsub}-{every}-{max_retries}"
    if folder.exists():
        return folder
    folder.mkdir()
    for f in Home(home).ensure_default_resources().iterdir():
        (folder / f.name).write_text(f.read_text())
    (folder / "resiliency.yaml").write_text(
        f"""apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: delivery-retries}}
spec:
  policies:
    retries:
      quick: {{policy: constant, duration: {every}, maxRetries: {max_retries}}}
  targets:
    components:
      {pubsub}: {{inbound: {{retry: quick}}}}
"""
    )
    return folder


def subscription(pubsub: str, topic: str, route: str, **extra: Any) -> dict[str, Any]:
    return {"pubsubname": pubsub, "topic": topic, "route": route, **extra}


def start_subscriber(
    home: Path,
    app_id: str,
    subscriptions: list[dict[str, Any]],
    records: Records,
    *extra: str,
    app_port: int | None = None,
    env: dict[str, str] | None = None,
) -> Sidecar:
    port = app_port or free_port()
    command = [
        sys.executable,
        str(APPS / "subscriber_app.py"),
        str(port),
        str(records.path),
        json.dumps(subscriptions),
    ]
    return start_sidecar(home, app_id, "--app-port", str(port), *extra, command=command, env=env)


def runtime_pid(sidecar: Sidecar) -> int:
    """The pid of the runtime process (`python -m tandem.ext_proc`) of this `tandem run`."""
    for pid, argv in child_processes(sidecar.proc.pid):
        if b"tandem.ext_proc" in argv:
            return pid
    raise AssertionError(f"no runtime process under tandem run pid {sidecar.proc.pid}")
