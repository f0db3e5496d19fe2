"""The workflow block's pure parts: instance ids, listing filters and pages, retention
settings, and the work queue's limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb

from tandem.blocks.errors import DaprError
from tandem.blocks.workflows.ids import check_instance_id
from tandem.blocks.workflows.listing import Filter, page
from tandem.blocks.workflows.record import COMPLETED, FAILED, TERMINATED
from tandem.blocks.workflows.settings import retention_by_status, unknown_retention_keys
from tandem.blocks.workflows.work_queue import WorkQueue


@pytest.mark.parametrize(
    ("instance_id", "code"),
    [
        ("x" * 65, "ERR_INSTANCE_ID_TOO_LONG"),
        ("a b", "ERR_INSTANCE_ID_INVALID"),
        ("a/b", "ERR_INSTANCE_ID_INVALID"),
    ],
)
def test_bad_instance_ids(instance_id: str, code: str) -> None:
    with pytest.raises(DaprError) as info:
        check_instance_id(instance_id)
    assert info.value.error_code == code and info.value.http_status == 400


def test_good_instance_id() -> None:
    check_instance_id("order_42-" + "x" * 55)


INDEX = {
    "a": ["order", "RUNNING", "2026-01-01T00:00:00+00:00", ""],
    "b": ["order", "COMPLETED", "2026-01-02T00:00:00+00:00", "2026-01-02T00:01:00+00:00"],
    "c": ["ship", "RUNNING", "2026-01-03T00:00:00+00:00", ""],
}


def test_filters_and_pages() -> None:
    running = Filter(statuses=frozenset({"RUNNING"}))
    assert page(INDEX, running, 0, "") == (["a", "c"], "")
    assert page(INDEX, Filter(name="order"), 1, "") == (["a"], "1")
    assert page(INDEX, Filter(name="order"), 1, "1") == (["b"], "")
    since = Filter(created_from=datetime(2026, 1, 2, tzinfo=UTC))
    assert page(INDEX, since, 0, "")[0] == ["b", "c"]


def test_retention_any_terminal_and_overrides() -> None:
    policy = {
        "anyTerminal": timedelta(hours=1),
        "failed": timedelta(days=1),
        "finished": timedelta(0),
    }
    by = retention_by_status(policy)
    assert by[COMPLETED] == timedelta(hours=1)
    assert by[TERMINATED] == timedelta(hours=1)
    assert by[FAILED] == timedelta(days=1)
    assert unknown_retention_keys(policy) == ["finished"]


def _activity(n: int) -> spb.WorkItem:
    return spb.WorkItem(activityRequest=spb.ActivityRequest(name="a", taskId=n))


def test_work_queue_holds_activities_beyond_the_limit() -> None:
    async def scenario() -> None:
        q = WorkQueue(max_activities=2)
        for n in range(3):
            q.put(f"t{n}", _activity(n))
        always = lambda token, item: True  # noqa: E731
        first = await q.take(1, always)
        second = await q.take(1, always)
        assert (first[0], second[0]) == ("t0", "t1")
        third = asyncio.ensure_future(q.take(1, always))
        await asyncio.sleep(0)
        assert not third.done()  # two are out: the third waits
        q.done("t0")
        assert (await asyncio.wait_for(third, 5))[0] == "t2"
        # A stream that ends gives back what it left unanswered, first in line.
        q.release(1)
        assert (await q.take(2, always))[0] in {"t1", "t2"}

    asyncio.run(scenario())


def test_actions_become_history_and_messages() -> None:
    from dapr.ext.workflow._durabletask.internal import orchestrator_actions_pb2 as apb

    from tandem.blocks.workflows.actions import translate
    from tandem.blocks.workflows.record import now

    at = now()
    task = apb.WorkflowAction(id=1, scheduleTask=apb.ScheduleTaskAction(name="step"))
    kind, e, message = translate("wf-1", task, at)
    assert kind == "scheduleTask" and message is None
    assert e is not None and e.eventId == 1 and e.taskScheduled.name == "step"
    child = apb.WorkflowAction(id=2, createChildWorkflow=apb.CreateChildWorkflowAction(name="c"))
    kind, e, message = translate("wf-1", child, at)
    assert e is not None and e.childWorkflowInstanceCreated.instanceId == "wf-1:0002"
    assert message == {"kind": "start", "id": "wf-1:0002", "name": "c", "input": None, "taskId": 2}
