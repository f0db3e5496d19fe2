"""The records `tandem run` keeps of its sidecars under ``$TANDEM_HOME/apps``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tandem.cli.home import Home
from tandem.procs import pid_alive


def running_apps(home: Home) -> list[dict[str, Any]]:
    """The records of live sidecars; those left by a killed sidecar are removed."""
    apps: list[dict[str, Any]] = []
    if not home.apps_dir.is_dir():
        return apps
    for f in sorted(home.apps_dir.glob("*.json")):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("pid"), int) and pid_alive(data["pid"]):
            apps.append(data)
        else:
            f.unlink(missing_ok=True)
    return apps


def config_version(run_dir: object) -> str | None:
    """The version of the resources the sidecar's runtime last applied (hot reload)."""
    if not isinstance(run_dir, str):
        return None
    try:
        data = json.loads((Path(run_dir) / "config-version.json").read_text())
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None
