"""What every secret store offers, and its one error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class SecretNotFoundError(LookupError):
    """The store has no secret by that name (the message names the secret, never a value)."""


class SecretStore(Protocol):
    """A store of named secrets; each secret is a map of key → value.

    Single-value stores (env, a flat file) answer ``{name: value}``; multi-key stores
    (Kubernetes, a multi-valued file) answer every key of the secret. ``blocking`` stores
    do network I/O and are called from a worker thread.
    """

    blocking: bool

    def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]: ...

    def bulk(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]: ...

    def close(self) -> None: ...
