"""Dapr's state key scheme: ``<prefix>||<key>``, the prefix chosen by ``keyPrefix``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tandem.blocks.component_metadata import ComponentConfigError, lookup
from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.blocks.registry import ComponentContext

SEPARATOR = "||"


@dataclass(frozen=True, slots=True)
class KeyScheme:
    """How one store turns a user key into a stored key. ``prefix=None``: keys stored raw."""

    store: str
    prefix: str | None

    @classmethod
    def from_metadata(
        cls, store: str, metadata: Mapping[str, str], ctx: ComponentContext
    ) -> KeyScheme:
        """``keyPrefix``: appid (default), name, namespace, none, or a literal prefix."""
        raw = lookup(metadata, "keyPrefix")
        mode = (raw or "appid").strip()
        match mode.lower():
            case "appid":
                return cls(store, ctx.app_id or None)
            case "name":
                return cls(store, store)
            case "namespace":
                # Dapr falls back to the app id alone when no namespace is known.
                if not ctx.namespace:
                    return cls(store, ctx.app_id or None)
                return cls(store, f"{ctx.namespace}.{ctx.app_id}")
            case "none":
                return cls(store, None)
        if SEPARATOR in mode:
            raise ComponentConfigError(f"keyPrefix {mode!r} can't contain {SEPARATOR!r}")
        return cls(store, mode)

    def stored(self, key: str) -> str:
        """The stored key for a user key, or the Dapr error for an empty or illegal key."""
        if not key:
            raise DaprError(
                "ERR_MALFORMED_REQUEST",
                "state key must not be empty",
                info=ErrorInfo(
                    reason="DAPR_STATE_ILLEGAL_KEY",
                    resource_type="state",
                    resource_name=self.store,
                    field_violations=(("key", "the key must not be empty"),),
                ),
            )
        if SEPARATOR in key:
            message = f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'"
            raise DaprError(
                "ERR_MALFORMED_REQUEST",
                message,
                info=ErrorInfo(
                    reason="DAPR_STATE_ILLEGAL_KEY",
                    resource_type="state",
                    resource_name=self.store,
                    field_violations=((key, message),),
                ),
            )
        return key if self.prefix is None else f"{self.prefix}{SEPARATOR}{key}"
