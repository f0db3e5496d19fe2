"""Dapr's state API semantics, shared by the HTTP and gRPC front doors.

The front doors turn wire requests into the domain requests of :mod:`.store` with *user*
keys; this module resolves the store, validates and prefixes keys, parses TTLs, calls the
component and turns whatever it raises into a :class:`DaprError` — a store that is down
must produce Dapr's 500, never an unhandled exception.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from opentelemetry.trace import SpanKind

from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.state.keys import SEPARATOR, KeyScheme
from tandem.blocks.state.query import (
    QueryError,
    QueryRequest,
    QueryResult,
    parse_query,
)
from tandem.blocks.state.store import (
    BulkGetItem,
    BulkWriter,
    Consistency,
    DeleteRequest,
    ETagInvalid,
    ETagMismatch,
    Feature,
    GetRequest,
    GetResponse,
    Querier,
    SetRequest,
    StateStore,
    TransactionOperation,
)
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.observability.tracing import NO_TRACING, Tracing, state_attributes

log = logging.getLogger(__name__)

TTL_KEY = "ttlInSeconds"
_MAX_TTL = 2**31 - 1  # Dapr's bound: TTLs are int32 seconds

_Req = TypeVar("_Req", SetRequest, DeleteRequest)


@dataclass(frozen=True, slots=True)
class StateComponent:
    """A configured store as the service sees it: its name, component and key scheme."""

    name: str
    store: StateStore
    keys: KeyScheme
    type: str = ""


def features_of(store: StateStore) -> frozenset[Feature]:
    """The store's declared features, plus ACTOR when it has both ETAG and TRANSACTIONAL."""
    declared = store.features
    if Feature.ETAG in declared and Feature.TRANSACTIONAL in declared:
        return declared | {Feature.ACTOR}
    return declared


def parse_ttl(metadata: Mapping[str, str]) -> int | None:
    """``ttlInSeconds`` as Dapr reads it: absent/empty → None, else an int in [-1, 2**31-1]."""
    raw = metadata.get(TTL_KEY)
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise ValueError(f"incorrect value for metadata '{TTL_KEY}': {raw!r}") from None
    if ttl < -1 or ttl > _MAX_TTL:
        raise ValueError(f"'{TTL_KEY}' must be in the range -1 to {_MAX_TTL}")
    return ttl


# Wraps each transaction's commit (the outbox, :mod:`tandem.blocks.outbox`): called with the
# store, the prepared operations, the request metadata and ``commit``, which it must await
# with the operations to apply. Commit failures are reported as ERR_STATE_TRANSACTION; a
# DaprError of the hook's own passes through as it is.
Commit = Callable[[Sequence[TransactionOperation]], Awaitable[None]]
TransactionHook = Callable[
    [StateComponent, Sequence[TransactionOperation], Mapping[str, str], Commit], Awaitable[None]
]


_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def _observed(operation: str) -> Callable[[_F], _F]:
    """Dapr's state metrics and a span (when tracing is on) around one store call."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        async def call(self: StateService, store: str, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            ok = False
            try:
                if not self.tracing.enabled:
                    result = await fn(self, store, *args, **kwargs)
                else:
                    comp = self._components.get(store)
                    attrs = state_attributes(store, comp.type if comp else "", operation.upper())
                    name = f"{operation.upper()} {store}"
                    with self.tracing.span(name, SpanKind.CLIENT, attrs):
                        result = await fn(self, store, *args, **kwargs)
                ok = True
                return result
            finally:
                if store in self._components:  # not for a store that does not exist
                    elapsed = (time.perf_counter() - start) * 1000
                    self.metrics.state(store, operation, ok, elapsed)

        return call  # type: ignore[return-value]

    return wrap


class StateService:
    def __init__(self, components: Iterable[StateComponent]) -> None:
        self._components: dict[str, StateComponent] = {c.name: c for c in components}
        self.transaction_hook: TransactionHook | None = None
        self.tracing: Tracing = NO_TRACING
        self.metrics: RuntimeMetrics = NO_METRICS

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[ComponentSpec],
        ctx: ComponentContext,
        wrap: Callable[[str, StateStore], StateStore] | None = None,
    ) -> StateService:
        """Create every ``state.*`` component in ``specs`` through the registry; ``wrap``
        puts each behind its Resiliency policy."""
        components = []
        for spec in specs:
            if not spec.type.startswith("state."):
                continue
            store = cast(StateStore, create_component(spec, ctx))
            if wrap is not None:
                store = wrap(spec.name, store)
            keys = KeyScheme.from_metadata(spec.name, spec.metadata, ctx)
            components.append(StateComponent(spec.name, store, keys, spec.type))
        return cls(components)

    @property
    def components(self) -> Mapping[str, StateComponent]:
        return self._components

    def set_component(self, name: str, comp: StateComponent | None) -> StateComponent | None:
        """Add, replace or (``None``) remove one store (hot reload); returns the one it
        replaced, which the caller closes once calls in flight are done with it."""
        previous = self._components.pop(name, None)
        if comp is not None:
            self._components[name] = comp
        return previous

    def features(self, name: str) -> frozenset[Feature]:
        return features_of(self.component(name).store)

    def component(self, name: str) -> StateComponent:
        """The named store, or Dapr's not-configured / not-found error."""
        found = self._components.get(name)
        if found is not None:
            return found
        if not self._components:
            raise DaprError(
                "ERR_STATE_STORE_NOT_CONFIGURED",
                "state store is not configured",
                info=ErrorInfo(reason="DAPR_STATE_NOT_CONFIGURED", resource_type="state"),
            )
        raise DaprError(
            "ERR_STATE_STORE_NOT_FOUND",
            f"state store {name} is not found",
            info=ErrorInfo(
                reason="DAPR_STATE_NOT_FOUND", resource_type="state", resource_name=name
            ),
        )

    def transactional(self, name: str) -> StateComponent:
        """The named store if it supports transactions (Dapr checks this before the body)."""
        comp = self.component(name)
        if Feature.TRANSACTIONAL not in comp.store.features:
            raise DaprError(
                "ERR_STATE_STORE_NOT_SUPPORTED",
                f"state store {name} doesn't support transactions",
                info=ErrorInfo(
                    reason="DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED",
                    resource_type="state",
                    resource_name=name,
                ),
            )
        return comp

    @_observed("get")
    async def get(
        self,
        store: str,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        consistency: Consistency | None = None,
    ) -> GetResponse:
        comp = self.component(store)
        req = GetRequest(comp.keys.stored(key), metadata or {}, consistency)
        try:
            return await comp.store.get(req)
        except Exception as exc:
            raise _failure(
                "ERR_STATE_GET", f"fail to get {key} from state store {store}", exc
            ) from exc

    @_observed("bulk_get")
    async def bulk_get(
        self,
        store: str,
        keys: Sequence[str],
        *,
        parallelism: int = 0,
        metadata: Mapping[str, str] | None = None,
    ) -> list[BulkGetItem]:
        """Items in request order, carrying the *user* keys."""
        comp = self.component(store)
        md = metadata or {}
        reqs = [GetRequest(comp.keys.stored(k), md) for k in keys]
        if not reqs:
            return []
        try:
            items = await comp.store.bulk_get(reqs, parallelism if parallelism > 0 else len(reqs))
        except Exception as exc:
            raise _failure(
                "ERR_STATE_BULK_GET", f"failed getting bulk state from {store}", exc
            ) from exc
        return [dataclasses.replace(item, key=k) for k, item in zip(keys, items, strict=True)]

    @_observed("set")
    async def save(self, store: str, items: Sequence[SetRequest]) -> None:
        comp = self.component(store)
        # Validate every item before writing any, so a bad request changes nothing.
        reqs = self._prepare_sets(comp, items, "ERR_STATE_SAVE")
        prefix = f"failed saving state in state store {store}"
        if len(reqs) > 1 and isinstance(comp.store, BulkWriter):
            await self._bulk("ERR_STATE_SAVE", prefix, comp.store, reqs)
            return
        await self._run_all("ERR_STATE_SAVE", prefix, [comp.store.set(r) for r in reqs])

    @_observed("delete")
    async def delete(self, store: str, req: DeleteRequest) -> None:
        comp = self.component(store)
        stored = self._prefixed(comp, req)
        try:
            await comp.store.delete(stored)
        except Exception as exc:
            raise _failure(
                "ERR_STATE_DELETE", f"failed deleting state with key {req.key}", exc
            ) from exc

    @_observed("bulk_delete")
    async def delete_bulk(self, store: str, reqs: Sequence[DeleteRequest]) -> None:
        comp = self.component(store)
        stored = [self._prefixed(comp, r) for r in reqs]
        prefix = f"failed deleting state in state store {store}"
        if len(stored) > 1 and isinstance(comp.store, BulkWriter):
            await self._bulk("ERR_STATE_BULK_DELETE", prefix, comp.store, stored)
            return
        await self._run_all("ERR_STATE_BULK_DELETE", prefix, [comp.store.delete(r) for r in stored])

    @_observed("transaction")
    async def transact(
        self,
        store: str,
        ops: Sequence[TransactionOperation],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        comp = self.transactional(store)
        if not ops:
            return
        prepared: list[TransactionOperation] = []
        for op in ops:
            if isinstance(op, SetRequest):
                prepared.extend(self._prepare_sets(comp, [op], "ERR_STATE_TRANSACTION"))
            else:
                prepared.append(self._prefixed(comp, op))
        md = metadata or {}

        async def commit(final: Sequence[TransactionOperation]) -> None:
            await comp.store.transact(final, md)

        try:
            if self.transaction_hook is None:
                await commit(prepared)
            else:
                await self.transaction_hook(comp, prepared, md, commit)
        except DaprError:
            raise
        except Exception as exc:
            # Dapr reports every transaction failure, etag conflicts included, as a 500.
            raise _failure(
                "ERR_STATE_TRANSACTION",
                "error while executing state transaction",
                exc,
                etag_status=False,
            ) from exc

    def querier(self, name: str) -> tuple[StateComponent, Querier]:
        """The named store if it answers the query API (checked before the query is read)."""
        comp = self.component(name)
        store = comp.store
        if Feature.QUERY_API not in store.features or not isinstance(store, Querier):
            raise DaprError(
                "ERR_STATE_STORE_NOT_SUPPORTED",
                "state store does not support querying",
                info=ErrorInfo(
                    reason="DAPR_STATE_QUERYING_NOT_SUPPORTED",
                    resource_type="state",
                    resource_name=name,
                ),
            )
        return comp, store

    @_observed("query")
    async def query(
        self, store: str, query: str | bytes, metadata: Mapping[str, str] | None = None
    ) -> QueryResult:
        """Run the query text an app sent; result keys are *user* keys. Like Dapr, a query
        that can't be parsed and one the store fails both are ``ERR_STATE_QUERY`` (500)."""
        comp, querier = self.querier(store)
        try:
            parsed = parse_query(query)
        except QueryError as exc:
            raise _query_failed(store, str(exc)) from None
        prefix = None if comp.keys.prefix is None else comp.keys.prefix + SEPARATOR
        try:
            result = await querier.query(QueryRequest(parsed, prefix, metadata or {}))
        except Exception as exc:
            log.warning("query on state store %s failed: %s", store, exc, exc_info=exc)
            raise _query_failed(store, str(exc)) from exc
        if prefix is None:
            return result
        cut = len(prefix)
        items = tuple(dataclasses.replace(i, key=i.key[cut:]) for i in result.items)
        return dataclasses.replace(result, items=items)

    async def close(self) -> None:
        for comp in self._components.values():
            try:
                await comp.store.close()
            except Exception:
                log.exception("closing state store %s failed", comp.name)

    @staticmethod
    def _prefixed(comp: StateComponent, req: _Req) -> _Req:
        return dataclasses.replace(req, key=comp.keys.stored(req.key))

    @staticmethod
    def _prepare_sets(
        comp: StateComponent, items: Sequence[SetRequest], code: str
    ) -> list[SetRequest]:
        out = []
        for item in items:
            key = comp.keys.stored(item.key)
            try:
                ttl = parse_ttl(item.metadata)
            except ValueError as exc:
                # Dapr's components reject a bad TTL, so Dapr answers with the op's 500.
                raise DaprError(
                    code, f"failed saving state in state store {comp.name}: {exc}"
                ) from None
            out.append(dataclasses.replace(item, key=key, ttl=ttl))
        return out

    @classmethod
    async def _bulk(
        cls,
        code: str,
        prefix: str,
        store: BulkWriter,
        ops: Sequence[SetRequest] | Sequence[DeleteRequest],
    ) -> None:
        """Independent writes in one database transaction (one store round trip); reported
        exactly as :meth:`_run_all` reports them."""
        try:
            results = await store.bulk_write(ops)
        except Exception as exc:
            raise _failure(code, prefix, exc) from exc
        cls._report(code, prefix, [r for r in results if r is not None])

    @classmethod
    async def _run_all(cls, code: str, prefix: str, calls: list[Coroutine[Any, Any, None]]) -> None:
        """Run independent writes together; report an etag error over any other failure."""
        if len(calls) == 1:
            try:
                await calls[0]
            except Exception as exc:
                raise _failure(code, prefix, exc) from exc
            return
        results = await asyncio.gather(*calls, return_exceptions=True)
        cls._report(code, prefix, [r for r in results if isinstance(r, BaseException)])

    @staticmethod
    def _report(code: str, prefix: str, errors: Sequence[BaseException]) -> None:
        if not errors:
            return
        for kind in (ETagMismatch, ETagInvalid):
            for err in errors:
                if isinstance(err, kind):
                    raise _failure(code, prefix, err) from err
        first = errors[0]
        if not isinstance(first, Exception):
            raise first
        raise _failure(code, prefix, first) from first


def _query_failed(store: str, detail: str) -> DaprError:
    return DaprError(
        "ERR_STATE_QUERY",
        f"failed query in state store {store}: {detail}",
        info=ErrorInfo(
            reason="DAPR_STATE_QUERY_FAILED", resource_type="state", resource_name=store
        ),
    )


def _failure(code: str, prefix: str, exc: Exception, *, etag_status: bool = True) -> DaprError:
    """A component exception as Dapr reports it: 409 on etag mismatch, 400 on a bad etag."""
    if isinstance(exc, DaprError):
        return exc
    detail = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
    message = f"{prefix}: {detail}"
    if etag_status and isinstance(exc, ETagMismatch):
        return DaprError(code, message, http_status=409, grpc_status=grpc.StatusCode.ABORTED)
    if etag_status and isinstance(exc, ETagInvalid):
        return DaprError(
            code, message, http_status=400, grpc_status=grpc.StatusCode.INVALID_ARGUMENT
        )
    if not isinstance(exc, ETagMismatch | ETagInvalid):
        log.warning("%s: %s", prefix, exc, exc_info=exc)
    return DaprError(code, message)
