"""Go ``time.ParseDuration`` syntax, the only duration syntax Dapr resources use."""

from __future__ import annotations

import re
from datetime import timedelta
from types import MappingProxyType

# Microseconds per unit; timedelta cannot hold nanoseconds, so "ns" values are truncated.
_UNIT_US = MappingProxyType(
    {
        "ns": 0.001,
        "us": 1.0,
        "µs": 1.0,  # U+00B5 micro sign
        "μs": 1.0,  # U+03BC greek mu: Go accepts both spellings
        "ms": 1_000.0,
        "s": 1_000_000.0,
        "m": 60_000_000.0,
        "h": 3_600_000_000.0,
    }
)
_TERM = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> timedelta:
    """Parse ``"1m30s"``, ``"500ms"``, ``"-1.5h"``, ``"0"`` into a timedelta.

    Raises ValueError with a message fit to show the user. Like Go, every term needs a
    unit (``"5"`` is rejected; only a bare ``"0"`` may omit it).
    """
    s = text.strip()
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return timedelta(0)
    if not s:
        raise ValueError(f"invalid duration {text!r}: empty")
    total_us = 0.0
    pos = 0
    while pos < len(s):
        match = _TERM.match(s, pos)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: expected terms like 300ms, 1.5s, 2m or 1h30m"
            )
        total_us += float(match.group(1)) * _UNIT_US[match.group(2)]
        pos = match.end()
    return timedelta(microseconds=sign * round(total_us))
