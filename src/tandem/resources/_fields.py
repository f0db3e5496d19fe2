"""Refusing what a parser does not handle: every key of a mapping is known, or named.

The traffic kinds (HTTPRoute, BackendTrafficPolicy) come from specifications much larger
than what Tandem compiles into Envoy; a field it does not honour must stop the load with
the file, the field and the reason rather than be dropped on the floor.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._parse import Node


def only(node: Node, supported: tuple[str, ...], refused: Mapping[str, str] | None = None) -> None:
    """Raise for the first key of ``node`` outside ``supported``: with its reason when
    ``refused`` knows it (a real field Tandem does not support), else as unknown."""
    if not node.present:
        return
    reasons = refused or {}
    for key, child in node.entries():
        if key in supported:
            continue
        if key in reasons:
            raise child.error(f"not supported by Tandem: {reasons[key]}")
        raise child.error(f"unknown field (known here: {', '.join(supported)})")
