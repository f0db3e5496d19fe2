"""Security tests start real Envoys through the helpers of tests/envoy (and tandem run
through tests/e2e); both folders hold plain modules, not packages."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for folder in ("envoy", "e2e"):
    path = str(_TESTS / folder)
    if path not in sys.path:
        sys.path.insert(0, path)
