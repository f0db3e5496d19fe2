from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from harness import remove_home


@pytest.fixture(scope="module")
def tandem_home():
    """A fresh $TANDEM_HOME (short path: Unix sockets live under it); its control plane is
    stopped at the end, since `tandem run` leaves it running on purpose."""
    home = Path(tempfile.mkdtemp(prefix="th", dir="/tmp"))
    yield home
    remove_home(home)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed end-to-end test shows the end of its sidecars' logs: CI keeps only what
    pytest prints, and the home with the logs is removed afterwards."""
    outcome = yield
    report = outcome.get_result()
    home = getattr(item, "funcargs", {}).get("tandem_home")
    if not report.failed or not isinstance(home, Path) or not (home / "logs").is_dir():
        return
    for path in sorted((home / "logs").glob("*.log")):
        with contextlib.suppress(OSError):
            tail = path.read_text(errors="replace").splitlines()[-40:]
            report.sections.append((f"tandem log {path.name} (last 40 lines)", "\n".join(tail)))
