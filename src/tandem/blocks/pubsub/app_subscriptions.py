"""Start-up of an app's subscriptions: wait for the app, ask it what it subscribes to,
merge with the declarative subscriptions, start them, report them; on a hot reload,
apply the new declarative subscriptions and replaced components.

Runs in the background after the runtime serves its API, so a slow app never blocks the
sidecar's start (``/v1.0/healthz/outbound`` is ready at once; ``/v1.0/healthz`` waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson

from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.pubsub.subscriber import Subscriber
from tandem.blocks.pubsub.subscriptions import TopicSubscription, merge, parse_programmatic
from tandem.resources import Resiliency

log = logging.getLogger("tandem.pubsub")

SUBSCRIBE_PATH = "/dapr/subscribe"
_FETCH_ATTEMPTS = 5


async def fetch_programmatic(channel: AppChannel) -> list[TopicSubscription]:
    """The app's ``GET /dapr/subscribe`` answer; 404 (or any non-2xx) means none."""
    delay = 0.1
    for attempt in range(1, _FETCH_ATTEMPTS + 1):
        try:
            resp = await channel.request("GET", SUBSCRIBE_PATH, timeout=10.0)
            break
        except AppChannelError as exc:
            if attempt == _FETCH_ATTEMPTS:
                log.error("GET %s failed, no programmatic subscriptions: %s", SUBSCRIBE_PATH, exc)
                return []
            await asyncio.sleep(delay)
            delay *= 2
    if resp.status == 404:
        return []
    if not 200 <= resp.status < 300:
        log.warning(
            "GET %s answered HTTP %d: no programmatic subscriptions", SUBSCRIBE_PATH, resp.status
        )
        return []
    try:
        payload = orjson.loads(resp.body) if resp.body.strip() else None
    except orjson.JSONDecodeError as exc:
        log.warning(
            "GET %s did not answer JSON (%s): no programmatic subscriptions", SUBSCRIBE_PATH, exc
        )
        return []
    subs, problems = parse_programmatic(payload)
    for problem in problems:
        log.warning("programmatic subscription skipped: %s", problem)
    return subs


class AppSubscriptions:
    """An app's subscriptions: the declarative ones (from its resources, reloadable) merged
    with the programmatic ones (asked of the app once, when a pubsub first exists)."""

    def __init__(
        self,
        subscriber: Subscriber,
        declarative: Sequence[TopicSubscription],
        on_change: Callable[[list[TopicSubscription]], None],
        fetch: Callable[[], Awaitable[list[TopicSubscription]]],
    ) -> None:
        self._subscriber = subscriber
        self._declarative = list(declarative)
        self._on_change = on_change
        self._fetch = fetch
        self._programmatic: list[TopicSubscription] | None = None
        self._app_ready = False
        # One change at a time: the start and a reload never interleave their broker calls.
        self._lock = asyncio.Lock()

    async def start(self, channel: AppChannel) -> None:
        """Wait for the app, then start its subscriptions (if pub/sub is configured)."""
        await channel.wait_ready()
        async with self._lock:
            self._app_ready = True
            await self._reconcile(frozenset(), None)

    async def reload(
        self,
        declarative: Sequence[TopicSubscription],
        renewed: frozenset[str],
        resiliencies: Sequence[Resiliency],
    ) -> None:
        """Apply new declarative subscriptions, replaced pubsubs (``renewed``) and policies."""
        async with self._lock:
            self._declarative = list(declarative)
            if self._app_ready:
                await self._reconcile(renewed, resiliencies)

    async def _reconcile(
        self, renewed: frozenset[str], resiliencies: Sequence[Resiliency] | None
    ) -> None:
        if self._programmatic is None and self._subscriber.has_pubsubs:
            self._programmatic = await self._fetch()
        subs, problems = merge(self._declarative, self._programmatic or [])
        for problem in problems:
            log.warning("%s", problem)
        started = await self._subscriber.reconcile(subs, renewed=renewed, resiliencies=resiliencies)
        self._on_change(started)

    async def stop(self) -> None:
        await self._subscriber.stop()
