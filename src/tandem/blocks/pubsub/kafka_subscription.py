"""One ``pubsub.kafka`` subscription: a consumer-group member that commits by hand.

Each assigned partition has one worker that hands its records to the handler one at a
time, in offset order. RETRY (or an exception) hands the same record again after the
retry interval, and only SUCCESS or DROP moves the worker on and lets the committed offset
pass the record — so the committed offset never passes an unacknowledged record, and
whatever a member held when it stopped or died is delivered by the partition's next owner.

A partition the group has never committed starts where the component says (``initial``:
the partition ends recorded when ``subscribe`` was called, or the partition start for
``oldest``), and that start is committed at once, so a member that goes away before
acknowledging anything still leaves its messages to the next one.

On a rebalance a revoked partition's worker gets ``revoke_grace`` seconds to finish the
handler in flight, then what was acknowledged is committed before the partition moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from tandem.blocks.pubsub.broker import Handler, Message, Outcome

log = logging.getLogger(__name__)

# How long a fetch waits for records. Kafka answers as soon as one arrives; some
# Kafka-protocol brokers (tansu) answer only at the wait's end, so a long wait is the
# latency of every quiet topic's next message (200 ms: p50 ~100 ms one at a time, 20 ms:
# ~13 ms; BENCHMARKS.md). The cost: an idle consumer asks 50 times a second.
FETCH_WAIT_MS = 20
# A partition whose worker holds this many unhandled records is paused until it catches up.
BUFFERED_RECORDS = 200


def _message(record: ConsumerRecord[Any, Any]) -> Message:
    md = {k: (v or b"").decode(errors="replace") for k, v in record.headers or ()}
    data = record.value if record.value is not None else b""
    return Message(record.topic, data, md, f"{record.partition}-{record.offset}")


class _PartitionWorker:
    """Hands one partition's records to the handler one at a time, in offset order."""

    def __init__(self, sub: KafkaSubscription, tp: TopicPartition, start: int) -> None:
        self._sub = sub
        self.tp = tp
        self.next_offset = start  # the first offset not yet acknowledged
        self._records: deque[ConsumerRecord[Any, Any]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    @property
    def backlog(self) -> int:
        return len(self._records)

    def feed(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        self._records.extend(records)
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            if not self._records:
                self._wake.clear()
                await self._wake.wait()
                continue
            record = self._records.popleft()
            if record.offset < self.next_offset:
                continue  # fetched before a seek back: already acknowledged
            self._sub.maybe_resume(self)
            msg = _message(record)
            attempt = 0
            while True:
                outcome = await self._sub.handle(msg, attempt)
                if outcome is not Outcome.RETRY:
                    break
                if self._stopping:
                    return  # not acknowledged: the partition's next owner gets it
                attempt += 1
                await asyncio.sleep(self._sub.retry_interval_s)
                if self._stopping:
                    return
            self.next_offset = record.offset + 1
            self._sub.acknowledged(self.tp, self.next_offset)

    async def stop(self, grace: float) -> None:
        """Take nothing more; let a handler in flight finish within ``grace``, else cancel it."""
        self._stopping = True
        self._records.clear()
        self._wake.set()
        await asyncio.wait([self._task], timeout=max(grace, 0.0))
        if not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: KafkaSubscription) -> None:
        self._sub = sub

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._sub.release(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._sub.take(assigned)


class KafkaSubscription:
    def __init__(
        self,
        consumer: AIOKafkaConsumer[Any, Any],
        topic: str,
        handler: Handler,
        *,
        initial: Mapping[TopicPartition, int],
        oldest: bool,
        retry_interval_s: float,
        revoke_grace_s: float,
        on_close: Callable[[KafkaSubscription], None],
    ) -> None:
        self._topic = topic
        self._handler = handler
        self._consumer = consumer
        self._initial = initial  # newest: each partition's end when subscribe was called
        self._oldest = oldest
        self.retry_interval_s = retry_interval_s
        self._revoke_grace = revoke_grace_s
        self._on_close = on_close
        self._workers: dict[TopicPartition, _PartitionWorker] = {}
        self._acked: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._commit_lock = asyncio.Lock()
        self._ack_event = asyncio.Event()
        self.joined = asyncio.Event()
        consumer.subscribe([topic], listener=_Rebalance(self))
        self._tasks = [asyncio.create_task(self._fetch()), asyncio.create_task(self._commits())]

    async def handle(self, msg: Message, attempt: int) -> Outcome:
        delivery = Message(msg.topic, msg.data, msg.metadata, msg.id, attempt)
        try:
            return await self._handler(delivery)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription handler failed; the message will be redelivered")
            return Outcome.RETRY

    # -- fetching ----------------------------------------------------------------------

    async def _fetch(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=FETCH_WAIT_MS, max_records=BUFFERED_RECORDS
                )
            except Exception as exc:
                log.warning("kafka fetch from %s failed, retrying: %s", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                worker = self._workers.get(tp)
                if worker is None:  # assigned, but not set up yet: fetch it again later
                    if records and tp in self._consumer.assignment():
                        self._consumer.seek(tp, records[0].offset)
                    continue
                worker.feed(records)
                if worker.backlog >= BUFFERED_RECORDS:
                    self._consumer.pause(tp)

    def maybe_resume(self, worker: _PartitionWorker) -> None:
        if worker.backlog < BUFFERED_RECORDS // 2 and worker.tp in self._consumer.paused():
            self._consumer.resume(worker.tp)

    # -- commits -----------------------------------------------------------------------

    def acknowledged(self, tp: TopicPartition, next_offset: int) -> None:
        self._acked[tp] = next_offset
        self._ack_event.set()

    async def _commits(self) -> None:
        while True:
            await self._ack_event.wait()
            self._ack_event.clear()
            await self._commit(set(self._workers))

    async def _commit(self, partitions: set[TopicPartition]) -> None:
        async with self._commit_lock:
            offsets = {
                tp: self._acked[tp]
                for tp in partitions
                if tp in self._acked and self._acked[tp] != self._committed.get(tp)
            }
            if not offsets:
                return
            try:
                await self._consumer.commit(
                    {tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()}
                )
            except Exception as exc:
                # Not lost: the records are delivered again from the last commit.
                log.warning("kafka commit on %s failed: %s", self._topic, exc)
                return
            self._committed.update(offsets)

    # -- rebalancing -------------------------------------------------------------------

    async def release(self, revoked: set[TopicPartition]) -> None:
        workers = [w for tp in revoked if (w := self._workers.get(tp)) is not None]
        await asyncio.gather(*(w.stop(self._revoke_grace) for w in workers))
        await self._commit({w.tp for w in workers})
        for w in workers:
            self._workers.pop(w.tp, None)
            self._acked.pop(w.tp, None)
            self._committed.pop(w.tp, None)

    async def take(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            stale = self._workers.pop(tp, None)
            if stale is not None:
                await stale.stop(0)
            try:
                start = await self._start_offset(tp)
            except Exception as exc:
                # aiokafka falls back to the group's offset or its reset policy.
                log.warning("kafka: no start offset for %s: %s", tp, exc)
                self._workers[tp] = _PartitionWorker(self, tp, 0)
                continue
            self._consumer.seek(tp, start)
            self._committed[tp] = start
            self._workers[tp] = _PartitionWorker(self, tp, start)
        self.joined.set()

    async def _start_offset(self, tp: TopicPartition) -> int:
        committed = await self._consumer.committed(tp)
        if committed is not None:
            return int(committed)
        if self._oldest:
            start = (await self._consumer.beginning_offsets([tp]))[tp]
        elif tp in self._initial:
            start = self._initial[tp]
        else:  # a partition added after subscribe: nothing in it predates the subscription
            start = (await self._consumer.beginning_offsets([tp]))[tp]
        await self._consumer.commit({tp: OffsetAndMetadata(start, "")})
        return int(start)

    # -- closing -----------------------------------------------------------------------

    async def close(self, grace: float = 5.0) -> None:
        self._on_close(self)
        fetch, commits = self._tasks
        fetch.cancel()
        await asyncio.gather(fetch, return_exceptions=True)
        workers = list(self._workers.values())
        await asyncio.gather(*(w.stop(grace) for w in workers))
        commits.cancel()
        await asyncio.gather(commits, return_exceptions=True)
        await self._commit({w.tp for w in workers})
        self._workers.clear()
        try:
            await self._consumer.stop()  # leaves the group: the partitions move at once
        except Exception as exc:
            log.warning("stopping the kafka consumer of %s failed: %s", self._topic, exc)
