"""Owner-only data: after a run that stored state and published a message, nothing under
$TANDEM_HOME is readable by another local user, and an older install's loose modes were
tightened on start."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import httpx
from harness import start_sidecar

NOBODY = 65534


def _loose(home: Path) -> list[str]:
    """Everything under ``home`` that group or others may read, write or enter."""
    out = []
    for path in (home, *home.rglob("*")):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(mode) and mode & 0o077:
            out.append(f"{oct(stat.S_IMODE(mode))} {path.relative_to(home)}")
    return out


def test_a_runs_files_are_the_owners_alone(tandem_home: Path) -> None:
    # An older install: a world-readable home, log and record.
    tandem_home.chmod(0o755)
    (tandem_home / "logs").mkdir()
    old_log = tandem_home / "logs" / "old.runtime.log"
    old_log.write_text("an old line\n")
    old_log.chmod(0o644)

    sidecar = start_sidecar(tandem_home, "modes")
    try:
        saved = httpx.post(
            f"{sidecar.base}/v1.0/state/statestore",
            json=[{"key": "secret", "value": "only-mine"}],
            timeout=10,
        )
        assert saved.status_code == 204
        published = httpx.post(
            f"{sidecar.base}/v1.0/publish/pubsub/orders", json={"card": "1234"}, timeout=10
        )
        assert published.status_code == 204
        data = [tandem_home / n for n in ("state.db", "pubsub.db")]
        assert all(p.exists() for p in data)
        assert (tandem_home / "state.db-wal").exists()  # WAL files are covered too

        assert stat.S_IMODE(tandem_home.stat().st_mode) == 0o700
        assert _loose(tandem_home) == []

        if os.geteuid() == 0:
            # Another OS user really cannot read the values or list the home.
            for target in (data[0], tandem_home / "logs"):
                probe = subprocess.run(
                    ["cat", str(target)], user=NOBODY, capture_output=True, text=True
                )
                assert probe.returncode != 0 and "Permission denied" in probe.stderr
    finally:
        sidecar.stop()
    assert _loose(tandem_home) == []
