"""A workflow app as Dapr's Python examples write one: the official SDK's WorkflowRuntime,
unchanged. Every activity run appends a JSON line to $WF_LOG, so tests can count how often
a step ran (at least once; a committed step never again)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import timedelta

from dapr.ext.workflow import (
    DaprWorkflowContext,
    RetryPolicy,
    WorkflowActivityContext,
    WorkflowRuntime,
    when_all,
    when_any,
)

LOG = os.environ.get("WF_LOG", "")
REPLICA = os.environ.get("REPLICA", "")  # which of an app's replicas ran an activity
# When set, a `slow` step also ends as soon as this file exists: a test holds every
# instance in its long step for as long as it needs, whatever the machine's speed.
RELEASE = os.environ.get("WF_RELEASE", "")
# The SDK runs activities on a thread pool (cpu count + 4 threads by default): a test that
# holds many activities at once asks for more.
THREADS = os.environ.get("WF_THREADS")
wfr = WorkflowRuntime(maximum_thread_pool_workers=int(THREADS) if THREADS else None)


def note(**fields: object) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({**fields, "replica": REPLICA}) + "\n")


@wfr.activity(name="step")
def step(ctx: WorkflowActivityContext, value: str) -> str:
    note(activity="step", value=value, instance=ctx.workflow_id)
    return f"{value}+"


@wfr.activity(name="square")
def square(ctx: WorkflowActivityContext, n: int) -> int:
    return n * n


@wfr.activity(name="slow")
def slow(ctx: WorkflowActivityContext, seconds: float) -> str:
    note(activity="slow-start", instance=ctx.workflow_id)
    if RELEASE:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not os.path.exists(RELEASE):
            time.sleep(0.05)
    else:
        time.sleep(seconds)
    note(activity="slow-end", instance=ctx.workflow_id)
    return "slept"


@wfr.activity(name="nap")
def nap(ctx: WorkflowActivityContext, seconds: float) -> int:
    note(activity="nap", at="start", t=time.time(), instance=ctx.workflow_id)
    time.sleep(seconds)
    note(activity="nap", at="end", t=time.time(), instance=ctx.workflow_id)
    return 1


@wfr.activity(name="flaky")
def flaky(ctx: WorkflowActivityContext, key: str) -> str:
    note(activity="flaky", key=key)
    with open(LOG) as f:
        tries = sum(1 for line in f if f'"key": "{key}"' in line)
    if tries < 3:
        raise RuntimeError(f"attempt {tries} fails")
    return f"ok after {tries}"


@wfr.activity(name="book")
def book(ctx: WorkflowActivityContext, what: str) -> str:
    if what == "car":
        raise ValueError("no cars left")
    note(activity="book", what=what, instance=ctx.workflow_id)
    return what


@wfr.activity(name="cancel")
def cancel(ctx: WorkflowActivityContext, what: str) -> str:
    note(activity="cancel", what=what, instance=ctx.workflow_id)
    return what


@wfr.workflow(name="chain")
def chain(ctx: DaprWorkflowContext, value: str):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(step, input=value)
    b = yield ctx.call_activity(step, input=a)
    c = yield ctx.call_activity(step, input=b)
    return c


@wfr.workflow(name="fanout")
def fanout(ctx: DaprWorkflowContext, n: int):  # type: ignore[no-untyped-def]
    results = yield when_all([ctx.call_activity(square, input=i) for i in range(n)])
    return sum(results)


@wfr.workflow(name="napfan")
def napfan(ctx: DaprWorkflowContext, n: int):  # type: ignore[no-untyped-def]
    return sum((yield when_all([ctx.call_activity(nap, input=0.4) for _ in range(n)])))


@wfr.workflow(name="approval")
def approval(ctx: DaprWorkflowContext, timeout_s: float):  # type: ignore[no-untyped-def]
    decision = ctx.wait_for_external_event("approve")
    timeout = ctx.create_timer(timedelta(seconds=timeout_s))
    winner = yield when_any([decision, timeout])
    if winner == timeout:
        return "timed out"
    return f"approved by {decision.get_result()}"


@wfr.workflow(name="parent")
def parent(ctx: DaprWorkflowContext, value: str):  # type: ignore[no-untyped-def]
    child = yield ctx.call_child_workflow(chain, input=value, instance_id=f"{ctx.instance_id}-c")
    return f"child said {child}"


@wfr.workflow(name="monitor")
def monitor(ctx: DaprWorkflowContext, count: int):  # type: ignore[no-untyped-def]
    yield ctx.call_activity(step, input=f"round{count}")
    if count >= 3:
        return count
    ctx.continue_as_new(count + 1)


@wfr.workflow(name="retrying")
def retrying(ctx: DaprWorkflowContext, key: str):  # type: ignore[no-untyped-def]
    policy = RetryPolicy(
        first_retry_interval=timedelta(milliseconds=200),
        max_number_of_attempts=5,
        backoff_coefficient=1.0,
    )
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


@wfr.workflow(name="saga")
def saga(ctx: DaprWorkflowContext, _: object):  # type: ignore[no-untyped-def]
    done: list[str] = []
    try:
        for what in ("flight", "hotel", "car"):
            yield ctx.call_activity(book, input=what)
            done.append(what)
    except Exception:
        for what in reversed(done):
            yield ctx.call_activity(cancel, input=what)
        return f"compensated {','.join(reversed(done))}"
    return "booked"


@wfr.workflow(name="waiter")
def waiter(ctx: DaprWorkflowContext, _: object):  # type: ignore[no-untyped-def]
    got = yield ctx.wait_for_external_event("go")
    return got


@wfr.workflow(name="nested")
def nested(ctx: DaprWorkflowContext, _: object):  # type: ignore[no-untyped-def]
    return (yield ctx.call_child_workflow(waiter, input=None, instance_id=f"{ctx.instance_id}-w"))


@wfr.workflow(name="sleeper")
def sleeper(ctx: DaprWorkflowContext, seconds: float):  # type: ignore[no-untyped-def]
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (yield ctx.call_activity(step, input="after-timer"))


@wfr.workflow(name="long")
def long(ctx: DaprWorkflowContext, seconds: float):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(step, input="before")
    yield ctx.call_activity(slow, input=seconds)
    b = yield ctx.call_activity(step, input=a)
    return b


stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
wfr.start()
print("workflow app ready", flush=True)
stop.wait()
wfr.shutdown()
