"""Run under `tandem run` (no app port needed): the official Dapr SDK publishes with
``publish_event`` and consumes through streaming subscriptions, both ``subscribe`` and
``subscribe_with_handler``.

    python sdk_pubsub.py [PUBSUB]

Prints one ``ok: ...`` line per check that holds and a ``FAIL: ...`` line for the first
one that does not, then exits 1; exits 0 after ``all pub/sub checks passed``. Topics carry
a per-run suffix, so the app can run again against the same broker.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.clients.grpc.subscription import Subscription
from dapr.common.pubsub.subscription import SubscriptionMessage

PUBSUB = sys.argv[1] if len(sys.argv) > 1 else "pubsub"
RUN = uuid.uuid4().hex[:8]
WAIT_S = 20.0
T = TypeVar("T")
_POOL = concurrent.futures.ThreadPoolExecutor(4)


class CheckFailed(Exception):
    pass


def check(condition: bool, what: str, detail: object = "") -> None:
    if not condition:
        raise CheckFailed(f"{what} {detail}".rstrip())
    print(f"ok: {what}", flush=True)


def topic(name: str) -> str:
    return f"{name}-{RUN}"


def within(fn: Callable[[], T], what: str, seconds: float = WAIT_S) -> T:
    """``fn()`` in a worker thread; a check failure when it takes longer than ``seconds``."""
    try:
        return _POOL.submit(fn).result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise CheckFailed(f"timed out after {seconds:.0f}s: {what}") from None


def publish(d: DaprClient, name: str, data: dict[str, Any]) -> None:
    d.publish_event(PUBSUB, name, json.dumps(data), data_content_type="application/json")


def next_message(sub: Subscription, what: str) -> SubscriptionMessage:
    return within(sub.next_message, what)


def streaming_topics() -> set[str]:
    url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/metadata"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    return {s["topic"] for s in body.get("subscriptions", []) if s.get("type") == "STREAMING"}


def until(pred: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not pred():
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out: {what}")
        time.sleep(0.05)  # polling the sidecar's metadata API, with a deadline


def run(d: DaprClient) -> None:
    # subscribe: events published with publish_event arrive in order, as JSON data
    orders = topic("orders")
    sub = d.subscribe(PUBSUB, orders)
    check(orders in streaming_topics(), "the open stream is listed as a STREAMING subscription")
    for n in range(3):
        publish(d, orders, {"n": n})
    got = []
    for _ in range(3):
        msg = next_message(sub, "an event on the subscribed topic")
        got.append(msg.data())
        check(msg.topic() == orders and msg.pubsub_name() == PUBSUB, "the event names its topic")
        sub.respond_success(msg)
    check(sorted(g["n"] for g in got) == [0, 1, 2], "subscribe receives every published event", got)
    check(got[0]["n"] == 0, "the first event published is the first received", got)

    # RETRY: the same event again; SUCCESS then acknowledges it
    publish(d, orders, {"n": "retry"})
    first = next_message(sub, "the event to retry")
    sub.respond_retry(first)
    again = next_message(sub, "the retried event")
    check(again.id() == first.id(), "an event answered RETRY is delivered again")
    sub.respond_success(again)
    sub.close()
    until(lambda: orders not in streaming_topics(), "the closed stream leaves the metadata")
    check(True, "closing the stream ends the subscription")

    # an event in flight when the stream closes goes back to the broker
    held_topic = topic("held")
    held = d.subscribe(PUBSUB, held_topic)
    publish(d, held_topic, {"n": "held"})
    unanswered = next_message(held, "the event held unanswered")
    held.close()
    until(lambda: held_topic not in streaming_topics(), "the held stream to close")
    fresh = d.subscribe(PUBSUB, held_topic)
    back = next_message(fresh, "the unanswered event on a new stream")
    check(back.id() == unanswered.id(), "an unanswered event is redelivered after the close")
    fresh.respond_success(back)
    fresh.close()

    # DROP with a dead-letter topic: the original event lands there
    droppy, poison = topic("droppy"), topic("poison")
    dead = d.subscribe(PUBSUB, poison)
    drops = d.subscribe(PUBSUB, droppy, dead_letter_topic=poison)
    publish(d, droppy, {"n": "drop"})
    dropped = next_message(drops, "the event to drop")
    drops.respond_drop(dropped)
    letter = next_message(dead, "the dead letter")
    check(letter.id() == dropped.id(), "an event answered DROP goes to the dead-letter topic")
    check(letter.data() == {"n": "drop"}, "the dead letter carries the original data")
    dead.respond_success(letter)
    drops.close()
    dead.close()

    # subscribe_with_handler: the handler's answers drive acknowledgement
    handled_topic = topic("handled")
    seen: list[SubscriptionMessage] = []
    all_in = threading.Event()
    tries: dict[str, int] = {}

    def handler(msg: SubscriptionMessage) -> TopicEventResponse:
        seen.append(msg)
        tries[msg.id()] = tries.get(msg.id(), 0) + 1
        data = msg.data()
        if data.get("flaky") and tries[msg.id()] == 1:
            return TopicEventResponse("retry")
        if len({m.id() for m in seen}) == 4 and len(seen) == 5:
            all_in.set()
        return TopicEventResponse("success")

    close = d.subscribe_with_handler(PUBSUB, handled_topic, handler)
    until(lambda: handled_topic in streaming_topics(), "the handler's stream to open")
    for n in range(3):
        publish(d, handled_topic, {"n": n})
    publish(d, handled_topic, {"n": 3, "flaky": True})
    check(all_in.wait(WAIT_S), "subscribe_with_handler gets every event", [m.data() for m in seen])
    flaky = [m for m in seen if m.data().get("flaky")]
    check(len(flaky) == 2, "the handler's RETRY answer brings the event back once", len(flaky))
    close()
    until(lambda: handled_topic not in streaming_topics(), "the handler's stream to close")
    check(True, "the close function ends the handler's subscription")


def main() -> int:
    try:
        with DaprClient() as d:
            run(d)
    except CheckFailed as exc:
        print(f"FAIL: {exc}", flush=True)
        return 1
    print("all pub/sub checks passed", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the SDK's stream threads must not keep a failed run alive
