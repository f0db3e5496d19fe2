"""Where a machine's Tandem state lives: `$TANDEM_HOME` (default `~/.tandem`)."""

from __future__ import annotations

import contextlib
import os
import stat
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

DEFAULT_PUBSUB = """\
# Written by `tandem run` on first use: the embedded default pub/sub. One SQLite file
# shared by every sidecar on this machine; consumer groups are app ids.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: "{path}"
"""

DEFAULT_LOCKSTORE = """\
# Written by `tandem run` on first use: the embedded default lock store. One SQLite file
# shared by every sidecar on this machine.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: lockstore
spec:
  type: lock.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: "{path}"
"""


PRIVATE_BITS = 0o077


def tighten(root: Path) -> None:
    """Remove group and other permissions from ``root`` and everything below it (symlinks
    are not followed: they may point outside the home)."""
    for path in (root, *root.rglob("*")):
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue  # gone meanwhile (a sidecar's run dir, a temp file)
        if stat.S_ISLNK(mode) or not mode & PRIVATE_BITS:
            continue
        with contextlib.suppress(OSError):
            path.chmod(stat.S_IMODE(mode) & ~PRIVATE_BITS)


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
        """Create the home owner-only, and take group/other access away from anything an
        older install left readable (databases, WAL files, logs, app records)."""
        for d in (self.root, self.apps_dir, self.logs_dir, self.run_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        tighten(self.root)

    def ensure_default_resources(self) -> Path:
        """The embedded defaults (like `dapr init` writes), created once and then left alone."""
        folder = self.default_resources
        folder.mkdir(parents=True, exist_ok=True)
        defaults = (
            ("statestore.yaml", DEFAULT_STATESTORE, "state.db"),
            ("pubsub.yaml", DEFAULT_PUBSUB, "pubsub.db"),
            ("lockstore.yaml", DEFAULT_LOCKSTORE, "lock.db"),
        )
        for file_name, template, db_name in defaults:
            target = folder / file_name
            if not target.exists():
                # Own temporary name: sidecars started together write these at once.
                tmp = target.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(template.format(path=self.root / db_name))
                tmp.replace(target)
        return folder
