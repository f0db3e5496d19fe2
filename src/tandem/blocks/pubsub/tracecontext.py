"""W3C trace context (``traceparent``) for events: start a trace, or continue one."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse(traceparent: str) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid ``traceparent``, else None."""
    m = _TRACEPARENT.match(traceparent.strip().lower())
    if m is None or m.group(1) == "ff" or set(m.group(2)) == {"0"} or set(m.group(3)) == {"0"}:
        return None
    return m.group(2), m.group(3), m.group(4)


def new() -> str:
    """A fresh sampled ``traceparent`` (a new trace)."""
    ids = secrets.token_hex(24)  # trace and span id from one draw: one syscall per publish
    return f"00-{ids[:32]}-{ids[32:]}-01"


def child(traceparent: str) -> str:
    """A new span in the same trace; a fresh trace when ``traceparent`` is not valid."""
    parsed = parse(traceparent)
    if parsed is None:
        return new()
    trace_id, _, flags = parsed
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"
