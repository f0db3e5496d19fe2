"""When a sidecar's process dies, `tandem run` says which one, which signal killed it, and
shows its log lines from this run only (the log file is appended to across runs)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness import start_sidecar, wait_until

OLD_LINE = "a line written by an earlier run of this app"


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _named(pid: int, needle: str) -> int:
    for child in _children(pid):
        if needle in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
            return child
    raise AssertionError(f"no child of {pid} runs {needle}")


def test_a_killed_envoy_is_named_with_its_signal_and_this_runs_lines(tandem_home: Path) -> None:
    logs = tandem_home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "crashy.envoy.log").write_text(f"{OLD_LINE}\n")

    sidecar = start_sidecar(tandem_home, "crashy")
    try:
        # Healthy through Envoy is not yet "started": wait for `tandem run` to say so.
        wait_until(lambda: "sidecar crashy ready" in sidecar.text(), 30, "start-up to finish")
        os.kill(_named(sidecar.proc.pid, "envoy"), signal.SIGKILL)
        wait_until(lambda: sidecar.proc.poll() is not None, 30, "tandem run to exit")

        assert sidecar.proc.returncode == 1
        output = sidecar.text()
        assert "the envoy was killed by SIGKILL unexpectedly" in output
        assert OLD_LINE not in output
    finally:
        sidecar.stop()
