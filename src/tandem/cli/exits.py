"""How a sidecar's process ended, worded for a person: shared by `tandem run`'s start-up
(``children.py``) and its long-lived supervisor (``watch.py``), which loads no asyncio."""

from __future__ import annotations

import signal
from pathlib import Path


def describe_exit(returncode: int | None) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL``, as a person wants to read it."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def log_tail(log_path: Path | None, offset: int = 0, lines: int = 20) -> str:
    """What to show a person when a child failed: its `error:` lines if it printed any (the
    runtime words its start-up failures that way), else the log's last lines from
    ``offset`` (this run's start: logs are appended to across runs)."""
    if log_path is None:
        return ""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    errors = [line for line in tail if line.startswith("error: ")]
    return "\n".join(errors or tail)
