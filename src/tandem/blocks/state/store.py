"""The contract between the state building block and its components.

A component sees only stored keys (already prefixed by :class:`~tandem.blocks.state.service.
StateService`), bytes and integer-version etags. Dapr's API rules (prefixes, validation,
error codes) live in the service, so each component stays small and the conformance suite
can hold every component to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from tandem.blocks.state.query import QueryRequest, QueryResult


class Feature(StrEnum):
    """Capabilities a state component declares; the strings are Dapr's (metadata API)."""

    ETAG = "ETAG"
    TRANSACTIONAL = "TRANSACTIONAL"
    TTL = "TTL"
    QUERY_API = "QUERY_API"
    # Dapr's stores report these for their runtime-internal list-by-prefix and
    # delete-by-prefix calls (no public API reaches them); declared where Dapr declares
    # them so the metadata API answers as Dapr's does for the same component type.
    KEYS_LIKE = "KEYS_LIKE"
    DELETE_WITH_PREFIX = "DELETE_WITH_PREFIX"
    # Never declared by a component: synthesised from ETAG + TRANSACTIONAL (see features()).
    ACTOR = "ACTOR"


class Concurrency(StrEnum):
    FIRST_WRITE = "first-write"
    LAST_WRITE = "last-write"


class Consistency(StrEnum):
    EVENTUAL = "eventual"
    STRONG = "strong"


@dataclass(frozen=True, slots=True)
class GetRequest:
    key: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    consistency: Consistency | None = None


@dataclass(frozen=True, slots=True)
class GetResponse:
    """``data is None`` means the key does not exist (or has expired)."""

    data: bytes | None
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BulkGetItem:
    """One key of a bulk get: a response, or the error reading that one key."""

    key: str
    response: GetResponse | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class SetRequest:
    """An upsert.

    ``etag`` set: compare-and-set against the stored version. No etag and ``first-write``:
    insert only (the key must not exist). Otherwise last write wins.
    ``ttl`` is filled by the service from ``metadata["ttlInSeconds"]``: ``None`` = not
    given (a component default may apply), ``<= 0`` = never expire, ``> 0`` = seconds.
    """

    key: str
    value: bytes
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: Concurrency | None = None
    consistency: Consistency | None = None
    ttl: int | None = None

    @property
    def insert_only(self) -> bool:
        return self.etag is None and self.concurrency is Concurrency.FIRST_WRITE


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """A delete; with ``etag`` it succeeds only if the stored version matches."""

    key: str
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: Concurrency | None = None
    consistency: Consistency | None = None


# A transaction is an ordered list of upserts and deletes applied all-or-nothing.
TransactionOperation = SetRequest | DeleteRequest


class StoreError(Exception):
    """Base of the errors a component raises on purpose; anything else is a store failure."""


class ETagMismatch(StoreError):
    """The etag does not match the stored version, or a first-write key already exists."""

    def __init__(self, key: str) -> None:
        super().__init__(f"possible etag mismatch. error from state store: key {key!r}")
        self.key = key


class ETagInvalid(StoreError):
    """The etag is not in the store's format (both built-in stores use integers)."""

    def __init__(self, etag: str) -> None:
        super().__init__(f"invalid etag value: {etag!r}")
        self.etag = etag


def parse_version(etag: str) -> int:
    """An integer-version etag, or ETagInvalid. Shared by the built-in components."""
    if not etag.isdigit() or len(etag) > 18:  # 18 digits fit any int64 version
        raise ETagInvalid(etag)
    return int(etag)


@runtime_checkable
class StateStore(Protocol):
    """One configured state component. Keys are stored keys (prefix already applied)."""

    @property
    def features(self) -> frozenset[Feature]: ...

    async def get(self, req: GetRequest) -> GetResponse: ...

    async def bulk_get(self, reqs: Sequence[GetRequest], parallelism: int) -> list[BulkGetItem]:
        """Read many keys, in order. A store with a native multi-key read ignores
        ``parallelism``; per-key failures go into ``BulkGetItem.error``."""
        ...

    async def set(self, req: SetRequest) -> None: ...

    async def delete(self, req: DeleteRequest) -> None: ...

    async def transact(
        self, ops: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        """Apply all operations or none; ETagMismatch if any etag check fails."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class BulkWriter(Protocol):
    """A store that writes a bulk save or delete in one database transaction."""

    async def bulk_write(
        self, ops: Sequence[SetRequest | DeleteRequest]
    ) -> list[StoreError | None]:
        """Apply independent writes in one transaction. Each item keeps its own outcome, as
        with one write per item: an item whose check fails (etag, first-write) changes
        nothing and gets its error at its index; the others commit together. Any other
        failure aborts the whole transaction and is raised."""
        ...


@runtime_checkable
class Querier(Protocol):
    """A store that also answers the query API (and declares ``Feature.QUERY_API``)."""

    async def query(self, req: QueryRequest) -> QueryResult:
        """Run a parsed query over the live keys starting with ``req.key_prefix``."""
        ...
