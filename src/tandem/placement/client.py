"""The runtime's end of the placement stream: keeps the fence current and the lease alive.

- On ``prepare`` it updates the fence, lets the actor engine deactivate what moved away
  (F2), and only then acknowledges.
- It renews the lease at a third of its length, counting each grant from when the renewal
  was sent (F3), and deactivates everything if the lease runs out or the stream breaks.
- After each commit, and when a lapsed lease is granted again, it runs the ``committed``
  hook (the workflow engine takes up the instances it now serves).
- Reminder firings (``fire``) run as actor turns; the outcome goes back on the stream.
- It reconnects with backoff, forever: a restarted control plane is found again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tandem.placement import wire
from tandem.placement.fence import Fence
from tandem.placement.table import Version

log = logging.getLogger("tandem.placement.client")

# Runs a reminder firing as a turn; answers the scheduler's outcome name.
FireHandler = Callable[[str, str, str, bytes], Awaitable[str]]
# Delivers a job trigger (name, data, due time) to the app; answers the scheduler's outcome name.
JobHandler = Callable[[str, bytes, str], Awaitable[str]]


class PlacementClient:
    def __init__(
        self,
        target: str,
        *,
        host: str,
        app_id: str,
        types: list[str],
        rebalance: Callable[[], Awaitable[object]],
        lost: Callable[[], Awaitable[object]],
        fire: FireHandler,
        clock: Callable[[], float] = time.monotonic,
        job: JobHandler | None = None,
        committed: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._target = target
        self._app_id = app_id
        self._types = types
        self._rebalance = rebalance
        self._lost = lost
        self._fire = fire
        self._job = job
        self._clock = clock
        self.fence = Fence(host)
        self.connected = asyncio.Event()
        self.committed = asyncio.Event()  # set once a table is committed on this stream
        self._lease = 5.0
        self._renewals: dict[float, float] = {}
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None  # the open stream's, if any
        self._lost_task: asyncio.Future[object] | None = None
        self._on_commit = committed  # run after each table this host commits
        self._commit_tasks: set[asyncio.Future[object]] = set()

    def serves(self, actor_type: str, actor_id: str) -> bool:
        return self.fence.serves(actor_type, actor_id, self._clock())

    def route(self, actor_type: str, actor_id: str) -> str | None:
        return self.fence.route(actor_type, actor_id)

    @property
    def version(self) -> Version | None:
        return self.fence.version

    def set_types(self, types: list[str]) -> None:
        """Host ``types`` from now on. Sent on the open stream rather than by reconnecting:
        a reconnect would hold every table change for the old stream's lease."""
        if types == self._types:
            return
        self._types = types
        if self._outbox is not None:
            self._outbox.put_nowait({"types": types})

    async def run(self) -> None:
        delay = 0.05
        while True:
            started = self._clock()
            try:
                async with grpc.aio.insecure_channel(self._target) as channel:
                    await self._session(channel)
            except grpc.aio.AioRpcError as exc:
                log.info("placement stream ended: %s %s", exc.code().name, exc.details())
            except OSError as exc:
                log.info("placement stream ended: %s", exc)
            finally:
                await self._drop()
            delay = 0.05 if self._clock() - started > 5 else min(delay * 2, 1.0)
            await asyncio.sleep(delay)

    async def _drop(self) -> None:
        had_table = self.fence.committed is not None
        self.fence.lost()
        self.connected.clear()
        self.committed.clear()
        if had_table:
            await self._lost()

    async def _session(self, channel: grpc.aio.Channel) -> None:
        call = channel.stream_stream(
            wire.CONNECT, request_serializer=wire.encode, response_deserializer=wire.decode
        )()
        hello_types = self._types
        await call.write(
            {
                "hello": {
                    "host": self.fence.host,
                    "app_id": self._app_id,
                    "types": hello_types,
                    "jobs": self._job is not None,
                }
            }
        )
        welcome = await call.read()
        if welcome is grpc.aio.EOF or "welcome" not in welcome:
            return
        self._lease = float(welcome["welcome"]["lease"])  # renewals are paced by it
        self.connected.set()
        # grpc allows one write at a time on a stream: every writer goes through this queue.
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox = outbox
        if self._types != hello_types:  # changed while the hello was on its way
            outbox.put_nowait({"types": self._types})
        helpers = [
            asyncio.create_task(self._write_forever(call, outbox)),
            asyncio.create_task(self._renew_forever(outbox)),
        ]
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    return
                await self._handle(outbox, message)
        finally:
            self._outbox = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    @staticmethod
    async def _write_forever(call: Any, outbox: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            await call.write(await outbox.get())

    async def _handle(self, outbox: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
        if "prepare" in message:
            table = wire.table_from(message["prepare"])
            self.fence.prepare(table)
            await self._rebalance()  # F2: deactivate what moved before acknowledging
            outbox.put_nowait({"prepared": str(table.version)})
        elif "commit" in message:
            if self.fence.commit(Version.parse(message["commit"])):
                self.committed.set()
                self._serving_again()
        elif "granted" in message:
            sent_at = self._renewals.pop(float(message["granted"]), None)
            if sent_at is not None:
                lapsed = self.fence.committed is not None and not self.fence.leased(self._clock())
                self.fence.renewed(sent_at, self._lease)
                if lapsed and self.fence.leased(self._clock()):
                    self._serving_again()  # the lease ran out (everything stopped) and is back
        elif "fire" in message:
            asyncio.create_task(self._run_fire(outbox, message["fire"]))
        elif "job" in message:
            asyncio.create_task(self._run_job(outbox, message["job"]))

    def _serving_again(self) -> None:
        if self._on_commit is not None:
            # Not awaited: the stream keeps reading (a take-over loads from the store).
            task = asyncio.ensure_future(self._on_commit())
            self._commit_tasks.add(task)
            task.add_done_callback(self._commit_tasks.discard)

    async def _run_fire(self, outbox: asyncio.Queue[dict[str, Any]], fire: dict[str, Any]) -> None:
        try:
            outcome = await self._fire(
                fire["type"], fire["actor"], fire["name"], base64.b64decode(fire["payload"])
            )
        except Exception:
            log.exception("reminder %s of %s/%s failed", fire["name"], fire["type"], fire["actor"])
            outcome = "failed"
        outbox.put_nowait({"fired": {"id": fire["id"], "outcome": outcome}})

    async def _run_job(self, outbox: asyncio.Queue[dict[str, Any]], job: dict[str, Any]) -> None:
        outcome = "unroutable"
        if self._job is not None:
            try:
                outcome = await self._job(
                    job["name"], base64.b64decode(job["data"]), str(job.get("due", ""))
                )
            except Exception:
                log.exception("job %s failed", job["name"])
                outcome = "failed"
        outbox.put_nowait({"fired": {"id": job["id"], "outcome": outcome}})

    async def _renew_forever(self, outbox: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            sent_at = self._clock()
            self._renewals = {sent_at: sent_at}  # only the latest renewal counts
            outbox.put_nowait({"renew": sent_at})
            await asyncio.sleep(self._lease / 3)
            expired = self.fence.committed is not None and not self.fence.leased(self._clock())
            # Renewals go on meanwhile: deactivating many actors takes a while.
            if expired and (self._lost_task is None or self._lost_task.done()):
                log.warning("placement lease ran out; deactivating every actor")
                self._lost_task = asyncio.ensure_future(self._lost())
