"""One stream per node: replaying a live sidecar's enrolment (its node id, credential and
CSR, as a process of the same OS user could copy them) is refused, and the real sidecar
stays registered and reachable while and after it happens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from secure_mesh import secure_mesh

from tandem.xds import resource_types as rt

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _replay(address: str, node_id: str, metadata: dict[str, object]) -> grpc.RpcError:
    struct = struct_pb2.Struct()
    struct.update({k: v for k, v in metadata.items() if v is not None})
    first = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=node_id, cluster=str(metadata["app_id"]), metadata=struct),
        type_url=rt.CLUSTER,
    )

    async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        yield first
        await asyncio.sleep(3600)  # hold the stream open, as a replaying attacker would

    async with grpc.aio.insecure_channel(address) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.StreamAggregatedResources(requests())
        try:
            await asyncio.wait_for(call.read(), 10)
        except grpc.aio.AioRpcError as exc:
            return exc
        finally:
            call.cancel()
    raise AssertionError("the replayed enrolment was admitted")


async def test_a_replayed_enrolment_is_refused_and_b_stays_reachable() -> None:
    async with secure_mesh() as mesh:
        await mesh.add("a")
        b = await mesh.add("b")
        await mesh.wait_invocable("a", "b")
        url = f"{mesh.sidecars['a'].http}/v1.0/invoke/b/method/during"

        async def invoke_meanwhile() -> list[str | None]:
            seen = []
            for _ in range(10):
                seen.append((await mesh.client.get(url)).headers.get("x-tandem-callee"))
            return seen

        # Replays and invocations interleave: b never leaves.
        *errors, callees = await asyncio.gather(
            *(_replay(mesh.control_plane.address, b.node_id, b.metadata) for _ in range(3)),
            invoke_meanwhile(),
        )

        assert {e.code() for e in errors} == {grpc.StatusCode.PERMISSION_DENIED}
        assert "already has a live stream" in (errors[0].details() or "")
        assert callees == ["b"] * 10
        assert "b" in mesh.control_plane.registry.mesh().app_ids()
        # After the refused streams have closed, too.
        await mesh.wait_invocable("a", "b")
        reply = await mesh.client.get(f"{mesh.sidecars['a'].http}/v1.0/invoke/b/method/after")
        assert reply.headers.get("x-tandem-callee") == "b"
