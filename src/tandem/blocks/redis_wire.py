"""Raw pipelined round trips over redis-py's own connections, for the hot store paths.

redis-py's ``Pipeline`` (command stack, per-command packing through its encoder, a pool
checkout, response callbacks, reset) cost about as much CPU per state GET as the rest of
the runtime's Redis work; the pool checkout alone records several metrics under a lock.
Here a caller that sends one batch at a time (a :class:`~tandem.blocks.coalesce.Coalescer`
drain) keeps one pooled connection, writes the batch's commands already packed as RESP,
and reads the replies back in order. The connection is still redis-py's: it connects,
authenticates, selects the database and speaks TLS as the rest of the component does, and
the client's retry policy (Dapr's ``maxRetries``) still covers a dropped connection.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


def command(*args: bytes) -> bytes:
    """One command in RESP, as Redis reads it: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


class Links:
    """Up to ``size`` kept connections, one per batch in flight (the coalescer's
    ``in_flight``): a round trip takes one (or a fresh one from the pool when none is
    kept, so concurrent callers never share a connection), and gives it back when its
    replies are all read."""

    def __init__(self, client: aioredis.Redis, size: int = 1) -> None:
        self._pool = client.connection_pool
        self._retry = client.get_retry()
        self._idle: list[Any] = []  # connections checked out of the pool, between batches
        self._size = size

    async def roundtrip(self, payload: bytes, replies: int) -> list[Any]:
        """Sends ``payload`` (``replies`` commands) and returns each reply in order: its
        value (bytes not decoded), or the ``ResponseError`` the server answered it with.
        A connection error is retried on a fresh connection as the client's policy says."""
        if self._retry is None:
            return await self._once(payload, replies)
        return await self._retry.call_with_retry(
            lambda: self._once(payload, replies), _ignore_failure
        )

    async def _once(self, payload: bytes, replies: int) -> list[Any]:
        if self._idle:
            conn = self._idle.pop()
            # As the pool checks a connection it hands out: one the server closed while it
            # was kept (a restart) is opened again before anything is sent on it, so a
            # write is never left in doubt on a connection known to be dead.
            try:
                stale = await conn.can_read()
            except RedisConnectionError:  # it has closed the connection already
                stale = False
            if stale:
                await conn.disconnect()
        else:
            conn = await self._pool.get_connection()
        try:
            await conn.send_packed_command(payload, check_health=False)
            out: list[Any] = []
            for _ in range(replies):
                try:
                    out.append(await conn.read_response(disable_decoding=True))
                except ResponseError as exc:  # the server's answer to this command
                    out.append(exc)
        except BaseException:
            # Replies may be left unread (a timeout, a drop): the connection is out of
            # step with its commands, so it is closed rather than kept or pooled.
            await conn.disconnect(nowait=True)
            await self._pool.release(conn)
            raise
        if len(self._idle) < self._size:
            self._idle.append(conn)
        else:
            await self._pool.release(conn)
        return out


async def _ignore_failure(error: Exception) -> None:
    # _once has already closed and returned the connection that failed.
    return None
