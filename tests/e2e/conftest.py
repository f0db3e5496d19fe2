from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tandem_home():
    """A fresh $TANDEM_HOME (short path: Unix sockets live under it); its control plane is
    stopped at the end, since `tandem run` leaves it running on purpose."""
    home = Path(tempfile.mkdtemp(prefix="th", dir="/tmp"))
    yield home
    cp = home / "controlplane.json"
    if cp.exists():
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
            os.kill(json.loads(cp.read_text())["pid"], signal.SIGTERM)
    shutil.rmtree(home, ignore_errors=True)
