"""A circuit breaker's ``trip`` expression: CEL over Dapr's three counters.

Compiled with the project's CEL library (``cel``), which also tells which variables the
expression reads. That is enough to decide, without a hand-written parser, whether the
expression is the one shape Envoy's outlier detection can honour — a threshold on
``consecutiveFailures`` alone — and which threshold: the expression is evaluated over a
range of counts and must flip from false to true once and stay true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tandem.celexpr import cel

COUNTERS = ("requests", "totalFailures", "consecutiveFailures")
# Thresholds above this are not searched: a breaker that needs more failures in a row than
# this to open is not one Envoy is asked to enforce.
MAX_ENVOY_THRESHOLD = 10_000


class TripError(ValueError):
    """The expression does not compile, reads unknown variables or is not a boolean."""


@dataclass(frozen=True, slots=True)
class Trip:
    """A compiled trip expression.

    ``consecutive_threshold`` is K when the expression is true exactly when
    ``consecutiveFailures >= K`` whatever the other counters say (``> 5`` gives 6), and
    None for any other shape (the runtime can still evaluate it; Envoy cannot).
    """

    expression: str
    variables: frozenset[str]
    consecutive_threshold: int | None
    _program: Any = field(compare=False, repr=False)

    @classmethod
    def compile(cls, expression: str) -> Trip:
        try:
            program = cel.compile(expression)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise TripError(f"is not a CEL expression: {exc}") from None
        variables = frozenset(program.variables())
        unknown = sorted(variables - set(COUNTERS))
        if unknown:
            raise TripError(
                f"reads {', '.join(unknown)}; a trip expression may use only {', '.join(COUNTERS)}"
            )
        trip = cls(expression, variables, None, program)
        # Probe once so a non-boolean expression fails at load, not on the first failure.
        trip.evaluate(requests=1, total_failures=1, consecutive_failures=1)
        return cls(expression, variables, trip._threshold(), program)

    def evaluate(self, *, requests: int, total_failures: int, consecutive_failures: int) -> bool:
        try:
            result = self._program.execute(
                {
                    "requests": requests,
                    "totalFailures": total_failures,
                    "consecutiveFailures": consecutive_failures,
                }
            )
        except (ValueError, TypeError, RuntimeError) as exc:
            raise TripError(f"does not evaluate: {exc}") from None
        if not isinstance(result, bool):
            raise TripError(f"must be true or false, got {result!r}")
        return result

    def _threshold(self) -> int | None:
        if self.variables != {"consecutiveFailures"}:
            return None
        threshold: int | None = None
        for count in range(MAX_ENVOY_THRESHOLD + 2):
            tripped = self.evaluate(
                requests=count, total_failures=count, consecutive_failures=count
            )
            if threshold is None and tripped:
                threshold = count
            elif threshold is not None and not tripped:
                return None  # true then false again: not a threshold
        # Zero would open the breaker before any failure: not a breaker Envoy can build.
        return threshold if threshold else None
