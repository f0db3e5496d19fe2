"""``state.redis``: state in Redis hashes, one client per component instance.

Layout (the one Dapr's Redis store uses): each key is a hash with fields ``data`` (the
value) and ``version`` (the etag), the version counted per key: the first save of a key
gives ``1``, each later save adds one, and a deleted (or expired) key starts again at ``1``,
as in Dapr. Every check-and-set runs as a Lua script, because a script executes atomically
on the server: no other client's command can slip between the version check and the
write. A single-key operation touches only its own key (Redis Cluster needs that: a script
naming keys of two hash slots fails with CROSSSLOT); a transaction names exactly its keys.
Hashes written by older Tandem versions (one global counter) read back unchanged and
simply count on from their version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import NoScriptError, ResponseError

from tandem.blocks.coalesce import Coalescer
from tandem.blocks.component_metadata import (
    as_bool,
    as_int,
    as_seconds,
    lookup,
    redis_address,
    redis_read_timeout,
)
from tandem.blocks.redis_wire import Links, command
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.store import (
    BulkGetItem,
    DeleteRequest,
    ETagMismatch,
    Feature,
    GetRequest,
    GetResponse,
    SetRequest,
    TransactionOperation,
    parse_version,
)

_MISMATCH = "TANDEM_ETAG_MISMATCH"

# KEYS: key. ARGV: etag ('' = none), insert-only ('1'/'0'), data, ttl (<= 0: persist).
_SET = f"""
local v = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] ~= '' then
  if v ~= ARGV[1] then return redis.error_reply('{_MISMATCH}') end
elseif ARGV[2] == '1' and v then
  return redis.error_reply('{_MISMATCH}')
end
local nv = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end
return nv
"""

# KEYS: key. ARGV: etag ('' = none).
_DELETE = f"""
if ARGV[1] ~= '' then
  if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then
    return redis.error_reply('{_MISMATCH}')
  end
end
return redis.call('DEL', KEYS[1])
"""

# KEYS: one key per operation. ARGV: 5 per operation —
# kind ('s' upsert / 'd' delete), etag, insert-only, data, ttl.
# Phase 1 checks every operation against the state the earlier ones would leave (so a key
# may appear twice) without writing; phase 2 writes. A script is not rolled back on error,
# so everything that can fail (etags, wrong key types) is met in phase 1.
_TRANSACT = f"""
local cur = {{}}
for i = 1, #KEYS do
  local key, b = KEYS[i], (i - 1) * 5
  local v = cur[key]
  if v == nil then v = redis.call('HGET', key, 'version') end
  if ARGV[b + 2] ~= '' then
    if v ~= ARGV[b + 2] then return redis.error_reply('{_MISMATCH} ' .. key) end
  elseif ARGV[b + 1] == 's' and ARGV[b + 3] == '1' and v then
    return redis.error_reply('{_MISMATCH} ' .. key)
  end
  if ARGV[b + 1] == 's' then
    local n = 0
    if v then n = tonumber(v) end
    -- HINCRBY in phase 2 would fail half way on a version that is not an integer.
    if n == nil then return redis.error_reply('ERR version of ' .. key .. ' is not an integer') end
    cur[key] = tostring(n + 1)
  else
    cur[key] = false
  end
end
for i = 1, #KEYS do
  local key, b = KEYS[i], (i - 1) * 5
  if ARGV[b + 1] == 's' then
    redis.call('HINCRBY', key, 'version', 1)
    redis.call('HSET', key, 'data', ARGV[b + 4])
    local ttl = tonumber(ARGV[b + 5])
    if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
  else
    redis.call('DEL', key)
  end
end
return #KEYS
"""


def redis_client(
    md: Mapping[str, str], what: str, *, caller_bounds_calls: bool = False
) -> aioredis.Redis:
    """A client from Dapr's Redis metadata (``redisHost``, ``redisDB``, credentials, TLS,
    timeouts, retries), for every Redis component that talks plain commands.

    ``caller_bounds_calls``: no socket timeout, the component bounds each call (or batch)
    with ``readTimeout`` itself. With one, redis-py sends every command through
    ``asyncio.wait_for`` (a task more per command) and reads under a timer of its own."""
    host, port = redis_address(md, what)
    return aioredis.Redis(
        host=host,
        port=port,
        db=as_int("redisDB", lookup(md, "redisDB"), 0),
        username=lookup(md, "redisUsername") or None,
        password=lookup(md, "redisPassword") or None,
        ssl=as_bool(lookup(md, "enableTLS")),
        socket_connect_timeout=as_seconds("dialTimeout", lookup(md, "dialTimeout"), 5.0),
        socket_timeout=None if caller_bounds_calls else redis_read_timeout(md),
        decode_responses=False,
        # Dapr's knobs and defaults: 3 retries of connection errors, backoff capped at 2s.
        retry=Retry(
            ExponentialWithJitterBackoff(
                base=0.008,
                cap=as_seconds("maxRetryBackoff", lookup(md, "maxRetryBackoff"), 2.0),
            ),
            as_int("maxRetries", lookup(md, "maxRetries"), 3),
        ),
    )


def create(spec: ComponentSpec, ctx: ComponentContext) -> RedisStateStore:
    md = spec.metadata
    client = redis_client(md, f"state store {spec.name}", caller_bounds_calls=True)
    default_ttl = as_int("ttlInSeconds", lookup(md, "ttlInSeconds"), 0)
    return RedisStateStore(client, default_ttl=default_ttl, timeout=redis_read_timeout(md))


class RedisStateStore:
    """Every call to Redis is bounded by ``timeout`` here (a batch of coalesced calls by
    one): the client is built without a socket timeout of its own."""

    def __init__(
        self, client: aioredis.Redis, *, default_ttl: int = 0, timeout: float = 5.0
    ) -> None:
        self._client = client
        self._default_ttl = default_ttl
        self._timeout = timeout
        # Registered once: the client sends EVALSHA and loads a script only when missing.
        self._set = client.register_script(_SET)
        self._delete = client.register_script(_DELETE)
        self._transact = client.register_script(_TRANSACT)
        # Concurrent single-key calls share one pipelined round trip (see coalesce.py),
        # sent raw over a kept connection (see redis_wire.py).
        self._gets: Coalescer[bytes, GetResponse] = Coalescer(self._get_many)
        self._get_links = Links(client)
        # Writes: up to three batches at once, each on its own connection. Each write is
        # one atomic script, so batches need no order between them; the server's script
        # time no longer holds the next batch back (SAVE +9 % at 16 in flight; reads
        # gained nothing).
        self._sets: Coalescer[tuple[SetRequest, bytes], None] = Coalescer(
            self._set_many, in_flight=3
        )
        self._set_links = Links(client, size=3)
        self._set_sha = self._set.sha.encode()

    @property
    def features(self) -> frozenset[Feature]:
        # Dapr's list; its QUERY_API needs RedisJSON/RediSearch, which this store does not use.
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.KEYS_LIKE})

    async def get(self, req: GetRequest) -> GetResponse:
        # Encoded here, so a key Redis cannot be sent fails its own call, not a batch.
        return await self._gets.submit(command(b"HMGET", req.key.encode(), b"data", b"version"))

    async def _get_many(self, hmgets: list[bytes]) -> list[GetResponse | BaseException]:
        async with asyncio.timeout(self._timeout):
            results = await self._get_links.roundtrip(b"".join(hmgets), len(hmgets))
        return [r if isinstance(r, Exception) else _response(r[0], r[1]) for r in results]

    async def bulk_get(self, reqs: Sequence[GetRequest], parallelism: int) -> list[BulkGetItem]:
        # One pipelined round trip; a per-key failure (e.g. WRONGTYPE) stays with its key.
        pipe = self._client.pipeline(transaction=False)
        for r in reqs:
            pipe.hmget(r.key, ["data", "version"])
        async with asyncio.timeout(self._timeout):
            results = await pipe.execute(raise_on_error=False)
        items = []
        for r, res in zip(reqs, results, strict=True):
            if isinstance(res, Exception):
                items.append(BulkGetItem(r.key, error=str(res)))
            else:
                items.append(BulkGetItem(r.key, _response(res[0], res[1])))
        return items

    async def set(self, req: SetRequest) -> None:
        # Packed here, so a key or etag that cannot be sent fails its own call, not a batch.
        await self._sets.submit((req, self._evalsha(req)))

    def _set_args(self, req: SetRequest) -> list[Any]:
        etag = _etag_arg(req.etag)
        return [etag, "1" if req.insert_only else "0", req.value, self._ttl(req)]

    def _evalsha(self, req: SetRequest) -> bytes:
        # The same ARGV the registered script gets (_set_args), as bytes.
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in self._set_args(req)]
        return command(b"EVALSHA", self._set_sha, b"1", req.key.encode(), *argv)

    async def _set_many(self, writes: list[tuple[SetRequest, bytes]]) -> list[None | BaseException]:
        # EVALSHA, raw (registering the script with a pipeline would cost a SCRIPT EXISTS
        # round trip per batch); a server without the script yet answers NOSCRIPT, and
        # those calls go again one by one through the registered script, which loads it.
        async with asyncio.timeout(self._timeout):
            results = await self._set_links.roundtrip(
                b"".join([evalsha for _, evalsha in writes]), len(writes)
            )
        out: list[None | BaseException] = []
        for (req, _), r in zip(writes, results, strict=True):
            if isinstance(r, NoScriptError):
                try:
                    await self._run(self._set, [req.key], self._set_args(req), req.key)
                except Exception as exc:
                    out.append(exc)
                else:
                    out.append(None)
            else:
                out.append(_script_error(r, req.key) if isinstance(r, Exception) else None)
        return out

    async def delete(self, req: DeleteRequest) -> None:
        await self._run(self._delete, [req.key], [_etag_arg(req.etag)], req.key)

    async def transact(
        self, ops: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        keys: list[str] = []
        args: list[Any] = []
        for op in ops:
            keys.append(op.key)
            etag = _etag_arg(op.etag)
            if isinstance(op, SetRequest):
                insert_only = "1" if op.insert_only else "0"
                args += ["s", etag, insert_only, op.value, self._ttl(op)]
            else:
                args += ["d", etag, "0", b"", 0]
        await self._run(self._transact, keys, args, ",".join(op.key for op in ops))

    async def close(self) -> None:
        await self._client.aclose()

    def _ttl(self, req: SetRequest) -> int:
        return self._default_ttl if req.ttl is None else req.ttl

    async def _run(self, script: Any, keys: list[str], args: list[Any], what: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await script(keys=keys, args=args)
        except ResponseError as exc:
            raise _script_error(exc, what) from None


def _script_error(exc: Exception, what: str) -> Exception:
    """A script's failure as the store reports it: a stale or missing etag, or as is."""
    if isinstance(exc, ResponseError) and _MISMATCH in str(exc):
        return ETagMismatch(what)
    return exc


def _etag_arg(etag: str | None) -> str:
    # Validated as an integer so the 400 (bad etag) is told apart from the 409 (stale).
    return "" if etag is None else str(parse_version(etag))


def _response(data: bytes | str | None, version: bytes | str | None) -> GetResponse:
    # The client is built with decode_responses=False, so both are bytes or None.
    if data is None:
        return GetResponse(None)
    raw = data.encode() if isinstance(data, str) else data
    etag = version.decode() if isinstance(version, bytes) else version
    return GetResponse(raw, etag)
