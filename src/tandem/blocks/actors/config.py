"""The app's actor settings, from its ``GET /dapr/config`` answer.

Every field Dapr reads is honoured; ``actorScanInterval`` (no longer read by Dapr) and
``remindersStoragePartitions`` (reminders live in Tandem's scheduler) are accepted and
reported once as not applying. Anything malformed refuses the whole answer by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from tandem.resources.durations import parse_duration


class ActorConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TypeSettings:
    idle_timeout: timedelta = timedelta(minutes=60)
    drain_timeout: timedelta = timedelta(seconds=2)
    drain_rebalanced: bool = True
    reentrancy: bool = False
    max_stack_depth: int = 32


@dataclass(frozen=True, slots=True)
class ActorConfig:
    types: Mapping[str, TypeSettings]
    notes: tuple[str, ...] = ()  # fields accepted but not applying, to warn about once

    @classmethod
    def none(cls) -> ActorConfig:
        return cls({})

    def settings(self, actor_type: str) -> TypeSettings | None:
        return self.types.get(actor_type)


def parse_actor_config(doc: Any) -> ActorConfig:
    """``doc`` is the decoded JSON of ``GET /dapr/config`` (an empty answer hosts nothing)."""
    if doc in (None, "", {}):
        return ActorConfig.none()
    if not isinstance(doc, dict):
        raise ActorConfigError("the answer is not a JSON object")
    entities = _names(doc, "entities")
    base = _apply(TypeSettings(), doc, "")
    per_type = dict.fromkeys(entities, base)
    for i, group in enumerate(doc.get("entitiesConfig") or []):
        where = f"entitiesConfig[{i}]."
        if not isinstance(group, dict):
            raise ActorConfigError(f"{where[:-1]}: not an object")
        for name in _names(group, "entities", where):
            if name not in per_type:
                raise ActorConfigError(f"{where}entities: {name!r} is not in entities")
            per_type[name] = _apply(base, group, where)
    notes = tuple(
        f"{field} does not apply to Tandem ({why}); ignored"
        for field, why in (
            ("actorScanInterval", "idle actors are checked on their own timers"),
            ("remindersStoragePartitions", "reminders live in the scheduler"),
        )
        if doc.get(field) not in (None, "", 0)
    )
    return ActorConfig(per_type, notes)


def _names(doc: Mapping[str, Any], field: str, where: str = "") -> list[str]:
    value = doc.get(field) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ActorConfigError(f"{where}{field}: expected a list of actor type names")
    return value


def _apply(settings: TypeSettings, doc: Mapping[str, Any], where: str) -> TypeSettings:
    out = settings
    if doc.get("actorIdleTimeout") not in (None, ""):
        out = replace(
            out, idle_timeout=_duration(doc["actorIdleTimeout"], where + "actorIdleTimeout")
        )
    if doc.get("drainOngoingCallTimeout") not in (None, ""):
        drain = _duration(doc["drainOngoingCallTimeout"], where + "drainOngoingCallTimeout")
        out = replace(out, drain_timeout=drain)
    if "drainRebalancedActors" in doc:
        if not isinstance(doc["drainRebalancedActors"], bool):
            raise ActorConfigError(f"{where}drainRebalancedActors: expected true or false")
        out = replace(out, drain_rebalanced=doc["drainRebalancedActors"])
    reentrancy = doc.get("reentrancy")
    if reentrancy is not None:
        if not isinstance(reentrancy, dict):
            raise ActorConfigError(f"{where}reentrancy: expected an object")
        enabled = reentrancy.get("enabled", False)
        depth = reentrancy.get("maxStackDepth", out.max_stack_depth)
        if not isinstance(enabled, bool):
            raise ActorConfigError(f"{where}reentrancy.enabled: expected true or false")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ActorConfigError(f"{where}reentrancy.maxStackDepth: expected an integer >= 1")
        out = replace(out, reentrancy=enabled, max_stack_depth=depth)
    return out


def _duration(value: Any, field: str) -> timedelta:
    if not isinstance(value, str):
        raise ActorConfigError(f"{field}: expected a duration string like 1h or 30s")
    try:
        parsed = parse_duration(value)
    except ValueError as exc:
        raise ActorConfigError(f"{field}: {exc}") from None
    if parsed <= timedelta(0):
        raise ActorConfigError(f"{field}: must be above 0")
    return parsed
