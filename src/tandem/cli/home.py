"""Where a machine's Tandem state lives: `$TANDEM_HOME` (default `~/.tandem`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATESTORE = """\
# Written by `tandem run` on first use: the embedded default state store.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: "{path}"
  - name: actorStateStore
    value: "true"
"""


@dataclass(frozen=True, slots=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls) -> Home:
        raw = os.environ.get("TANDEM_HOME")
        return cls(Path(raw).expanduser() if raw else Path.home() / ".tandem")

    @property
    def controlplane_file(self) -> Path:
        return self.root / "controlplane.json"

    @property
    def controlplane_lock(self) -> Path:
        return self.root / "controlplane.lock"

    @property
    def apps_dir(self) -> Path:
        return self.root / "apps"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def default_resources(self) -> Path:
        return self.root / "components"

    def ensure(self) -> None:
        for d in (self.root, self.apps_dir, self.logs_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)

    def ensure_default_resources(self) -> Path:
        """The embedded defaults (like `dapr init` writes), created once and then left alone."""
        folder = self.default_resources
        folder.mkdir(parents=True, exist_ok=True)
        statestore = folder / "statestore.yaml"
        if not statestore.exists():
            db = self.root / "state.db"
            tmp = statestore.with_suffix(".tmp")
            tmp.write_text(DEFAULT_STATESTORE.format(path=db))
            tmp.replace(statestore)
        return folder
