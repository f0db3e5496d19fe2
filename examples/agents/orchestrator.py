"""The orchestrator agent: a workflow decomposes the task with the model, publishes one
subtask per research thread, waits for every result (an activity with a retry policy:
each attempt re-publishes what is missing), and has the writer assemble the document by
service invocation. If a step after publishing fails for good, a compensation step
retracts the intermediate results. Then it stops every agent, and the run ends."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Generator
from datetime import timedelta
from typing import Any

from agentlib import PUBSUB, RESEARCHERS, STORE, TOPIC, WRITER, ask, load, result_key, save, say
from dapr.clients import DaprClient
from dapr.ext.workflow import (
    DaprWorkflowClient,
    DaprWorkflowContext,
    RetryPolicy,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
    when_all,
)

TASK = os.environ.get("AGENTS_TASK", "A short report on durable multi-agent pipelines")
SUGGESTED = ("history", "methods", "outlook")

wfr = WorkflowRuntime()
QUICK_RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3, backoff_coefficient=2
)
# Waiting for research: an attempt lasts up to 5 s; 16 attempts bound the wait.
RESEARCH_RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=1), max_number_of_attempts=16, backoff_coefficient=1
)


@wfr.workflow(name="research_pipeline")
def research_pipeline(
    ctx: DaprWorkflowContext, job: dict[str, Any]
) -> Generator[Any, Any, dict[str, Any]]:
    plan = yield ctx.call_activity(plan_task, input=job, retry_policy=QUICK_RETRY)
    subtasks = [{"run": job["run"], "task": job["task"], "topic": t} for t in plan]
    yield ctx.call_activity(publish_subtasks, input=subtasks, retry_policy=QUICK_RETRY)
    try:
        results = yield when_all(
            [
                ctx.call_activity(await_research, input=s, retry_policy=RESEARCH_RETRY)
                for s in subtasks
            ]
        )
        written = yield ctx.call_activity(
            write_document,
            input={"run": job["run"], "task": job["task"], "plan": plan, "sections": results},
            retry_policy=QUICK_RETRY,
        )
    except Exception as failure:  # compensation: undo what the pipeline left behind
        yield ctx.call_activity(retract, input={"run": job["run"], "plan": plan})
        raise RuntimeError(f"pipeline failed, results retracted: {failure}") from failure
    return written


@wfr.activity(name="plan_task")
def plan_task(ctx: WorkflowActivityContext, job: dict[str, Any]) -> list[str]:
    """Ask the model for research threads, one per line as "- topic"."""
    answer = ask(
        f"Decompose the task '{job['task']}' into research threads, one per line as '- name'."
        " Suggested:\n" + "\n".join(f"- {t}" for t in SUGGESTED)
    )
    # Topics become actor ids and state keys: letters, digits and dashes only.
    lines = [ln[2:] for ln in answer.splitlines() if ln.startswith("- ")]
    slugs = (re.sub(r"[^a-z0-9]+", "-", ln.lower()).strip("-") for ln in lines)
    topics = list(dict.fromkeys(t for t in slugs if t))[:5]
    plan = topics or list(SUGGESTED)
    say(f"plan: {', '.join(plan)}")
    return plan


@wfr.activity(name="publish_subtasks")
def publish_subtasks(ctx: WorkflowActivityContext, subtasks: list[dict[str, Any]]) -> int:
    with DaprClient() as client:
        for subtask in subtasks:
            client.publish_event(
                PUBSUB, TOPIC, json.dumps(subtask), data_content_type="application/json"
            )
    say(f"published {len(subtasks)} subtasks on '{TOPIC}'")
    return len(subtasks)


@wfr.activity(name="await_research")
def await_research(ctx: WorkflowActivityContext, subtask: dict[str, Any]) -> dict[str, Any]:
    """The research result, or a failure after 5 s (the retry policy tries again): before
    failing, the subtask is published again in case the agent that took it died."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        result = load(result_key(subtask["run"], subtask["topic"]))
        if result is not None:
            return result
        time.sleep(0.2)
    with DaprClient() as client:
        client.publish_event(
            PUBSUB, TOPIC, json.dumps(subtask), data_content_type="application/json"
        )
    say(f"no result yet for '{subtask['topic']}': subtask published again")
    raise TimeoutError(f"research on '{subtask['topic']}' not finished yet")


@wfr.activity(name="write_document")
def write_document(ctx: WorkflowActivityContext, job: dict[str, Any]) -> dict[str, Any]:
    with DaprClient() as client:
        answer = client.invoke_method(
            WRITER,
            "write",
            data=json.dumps(job),
            content_type="application/json",
            http_verb="POST",
        )
    return json.loads(answer.data)


@wfr.activity(name="retract")
def retract(ctx: WorkflowActivityContext, job: dict[str, Any]) -> None:
    with DaprClient() as client:
        for topic in job["plan"]:
            client.delete_state(STORE, result_key(job["run"], topic))
            client.delete_state(STORE, f"{job['run']}/draft/{topic}")
    save(f"{job['run']}/status", "compensated")
    say("compensation: intermediate results retracted")


def wait_for_agents(deadline: float) -> str | None:
    """None once every agent answers; else the first one that did not in time."""
    with DaprClient() as client:
        for agent in (*RESEARCHERS, WRITER):
            while True:
                try:
                    client.invoke_method(agent, "ready", http_verb="GET")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        return agent
                    time.sleep(0.5)
    return None


def stop_agents() -> None:
    with DaprClient() as client:
        for agent in (*RESEARCHERS, WRITER):
            try:
                client.invoke_method(agent, "stop", data=b"", http_verb="POST")
            except Exception as exc:  # already gone (e.g. killed): nothing to stop
                say(f"{agent} not stopped: {exc}")


def main() -> int:
    wfr.start()
    try:
        return run_pipeline()
    finally:
        stop_agents()
        wfr.shutdown()


def run_pipeline() -> int:
    missing = wait_for_agents(time.monotonic() + 60)
    if missing is not None:
        say(f"{missing} did not come up within 60 s")
        return 1
    run = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    client = DaprWorkflowClient()
    client.schedule_new_workflow(
        research_pipeline, input={"run": run, "task": TASK}, instance_id=run
    )
    say(f"workflow {run} started")
    state = client.wait_for_workflow_completion(run, timeout_in_seconds=100)
    if state is None or state.runtime_status != WorkflowStatus.COMPLETED:
        detail = state.failure_details.message if state and state.failure_details else state
        say(f"workflow {run} did not complete: {detail}")
        return 1
    say(f"workflow {run} completed: {state.serialized_output}")
    print(load(f"{run}/report"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
