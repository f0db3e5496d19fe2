"""The Jobs API over real gRPC to a real control plane (Unix socket): the gRPC RPCs'
round trip and Dapr's errors, and a due job handed to exactly one of two replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import jobs_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from test_placement_service import ControlPlane, until

from tandem.blocks.errors import DaprError
from tandem.blocks.jobs.service import JobsService
from tandem.ext_proc import jobs_grpc
from tandem.placement.client import PlacementClient


@pytest.fixture
async def cp(tmp_path) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(tmp_path)
    await plane.start()
    yield plane
    await plane.stop()


@pytest.fixture
async def rpcs(cp: ControlPlane) -> AsyncIterator[dict]:
    async with grpc.aio.insecure_channel(cp.target) as channel:
        yield jobs_grpc.rpcs(JobsService("app", channel))


def job(name: str, **fields) -> jobs_pb2.ScheduleJobRequest:
    return jobs_pb2.ScheduleJobRequest(job=jobs_pb2.Job(name=name, **fields))


async def test_grpc_round_trip(rpcs) -> None:
    data = any_pb2.Any()
    data.Pack(wrappers_pb2.StringValue(value="payload"))
    policy = common_pb2.JobFailurePolicy(
        constant=common_pb2.JobFailurePolicyConstant(
            interval=duration_pb2.Duration(seconds=2), max_retries=3
        )
    )
    await rpcs["ScheduleJob"](
        job("nightly", schedule="0 0 3 * * *", repeats=5, data=data, failure_policy=policy)
    )
    got = (await rpcs["GetJobAlpha1"](jobs_pb2.GetJobRequest(name="nightly"))).job
    assert (got.name, got.schedule, got.repeats) == ("nightly", "0 0 3 * * *", 5)
    assert got.data == data
    assert got.failure_policy.constant.interval.seconds == 2
    assert got.failure_policy.constant.max_retries == 3
    await rpcs["ScheduleJobAlpha1"](job("nightly-2", due_time="1h"))
    listed = await rpcs["ListJobs"](jobs_pb2.ListJobsRequest())
    assert sorted(j.name for j in listed.jobs) == ["nightly", "nightly-2"]
    await rpcs["DeleteJobsByPrefix"](jobs_pb2.DeleteJobsByPrefixRequest(name_prefix="nightly-"))
    listed = await rpcs["ListJobsAlpha1"](jobs_pb2.ListJobsRequestAlpha1())
    assert [j.name for j in listed.jobs] == ["nightly"]
    await rpcs["DeleteJob"](jobs_pb2.DeleteJobRequest(name="nightly"))
    with pytest.raises(DaprError) as info:
        await rpcs["GetJob"](jobs_pb2.GetJobRequest(name="nightly"))
    assert info.value.grpc_status == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "code", "status"),
    [
        (job("", due_time="1s"), "DAPR_SCHEDULER_JOB_NAME_EMPTY", grpc.StatusCode.INVALID_ARGUMENT),
        (job("a||b", due_time="1s"), "DAPR_SCHEDULER_JOB_NAME", grpc.StatusCode.INVALID_ARGUMENT),
        (job("x"), "DAPR_SCHEDULER_SCHEDULE_EMPTY", grpc.StatusCode.INVALID_ARGUMENT),
        (
            job("x", schedule="often"),
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            job("x", due_time="later"),
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_grpc_bad_jobs(rpcs, request_, code, status) -> None:
    with pytest.raises(DaprError) as info:
        await rpcs["ScheduleJob"](request_)
    assert (info.value.error_code, info.value.grpc_status) == (code, status)


async def test_each_due_time_goes_to_one_replica(cp: ControlPlane, rpcs) -> None:
    got: list[tuple[str, str, bytes]] = []

    def replica(name: str) -> tuple[PlacementClient, asyncio.Task[None]]:
        async def deliver(job_name: str, data: bytes, due: str) -> str:
            got.append((name, job_name, data))
            return "delivered"

        async def nothing() -> None:
            return None

        async def fire(*_: object) -> str:
            return "delivered"

        client = PlacementClient(
            cp.target, host=name, app_id="app", types=[], rebalance=nothing, lost=nothing,
            fire=fire, job=deliver,
        )  # fmt: skip
        return client, asyncio.create_task(client.run())

    replicas = [replica("r1"), replica("r2")]
    try:
        await until(lambda: all(c.connected.is_set() for c, _ in replicas), "both connected")
        await rpcs["ScheduleJob"](job("every", schedule="@every 0.2s", repeats=6))
        await until(lambda: len(got) >= 6, "six triggers")
        await asyncio.sleep(0.6)  # a window for a seventh that must not come
        assert len(got) == 6
        assert {r for r, _, _ in got} == {"r1", "r2"}  # taking turns
    finally:
        for _, task in replicas:
            task.cancel()
        await asyncio.gather(*(t for _, t in replicas), return_exceptions=True)
