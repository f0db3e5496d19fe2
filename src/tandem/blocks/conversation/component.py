"""What a conversation component offers, and reading its metadata."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

from tandem.blocks.conversation.model import Request, Result

log = logging.getLogger("tandem.runtime")


class ConversationComponent(Protocol):
    async def converse(self, request: Request) -> Result: ...

    async def close(self) -> None: ...


class ProviderError(Exception):
    """The model provider failed or refused the call (``ERR_CONVERSATION_INVOKE``).

    ``retriable``: a failure the Resiliency policy may retry (5xx, overload, network), as
    opposed to a refusal that would be refused again."""

    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


def warn_unknown(name: str, kind: str, metadata: Mapping[str, str], known: Iterable[str]) -> None:
    """One warning per component for metadata fields it does not use (never silently ignored)."""
    lowered = {k.lower() for k in known}
    extra = sorted(k for k in metadata if k.lower() not in lowered)
    if extra:
        log.warning(
            "component %s (%s): metadata %s not used by this component type",
            name,
            kind,
            ", ".join(extra),
        )
