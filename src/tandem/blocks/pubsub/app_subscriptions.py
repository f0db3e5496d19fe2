"""Start-up of an app's subscriptions: wait for the app, ask it what it subscribes to,
merge with the declarative subscriptions, start them, report them.

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


async def start_app_subscriptions(
    channel: AppChannel,
    subscriber: Subscriber | None,
    declarative: Sequence[TopicSubscription],
    on_ready: Callable[[list[TopicSubscription]], None],
    *,
    fetch: Callable[[], Awaitable[list[TopicSubscription]]] | None = None,
) -> None:
    """Wait for the app, then start its subscriptions (if pub/sub is configured).
    ``fetch`` asks the app what it subscribes to (default: ``GET /dapr/subscribe``)."""
    await channel.wait_ready()
    started: list[TopicSubscription] = []
    if subscriber is not None:
        programmatic = await (fetch() if fetch is not None else fetch_programmatic(channel))
        subs, problems = merge(declarative, programmatic)
        for problem in problems:
            log.warning("%s", problem)
        started = await subscriber.subscribe_all(subs)
    on_ready(started)
