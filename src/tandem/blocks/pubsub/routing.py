"""Routing rules: CEL expressions over the CloudEvent (``event.type``, ``event.data.x``).

Compiled once per subscription; the first rule that evaluates to ``true`` gives the path.
An expression that fails on an event (a missing field, a type mismatch) does not match.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tandem.celexpr import cel
from tandem.resources import RoutingRule

log = logging.getLogger(__name__)


class RouteError(ValueError):
    """A routing rule's CEL expression does not compile."""


@dataclass(frozen=True, slots=True)
class Routes:
    rules: tuple[tuple[Any, str], ...]  # (compiled program, or None for the catch-all; path)

    @classmethod
    def compile(cls, rules: Sequence[RoutingRule]) -> Routes:
        compiled: list[tuple[Any, str]] = []
        for rule in rules:
            if not rule.match:
                compiled.append((None, rule.path))
                continue
            try:
                compiled.append((cel.compile(rule.match), rule.path))
            except (ValueError, TypeError, RuntimeError) as exc:
                raise RouteError(f"routing rule {rule.match!r}: {exc}") from None
        return cls(tuple(compiled))

    def path_for(self, event: Mapping[str, Any]) -> str | None:
        """The path of the first matching rule, or None when nothing matches."""
        context: dict[str, Any] | None = None
        for program, path in self.rules:
            if program is None:
                return path
            if context is None:
                context = {"event": dict(event)}
            try:
                matched = program.execute(context)
            except Exception as exc:  # evaluation errors: this rule does not match
                log.debug("routing rule on %s did not evaluate: %s", path, exc)
                continue
            if matched is True:
                return path
        return None
