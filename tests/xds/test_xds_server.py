"""ADS over a real grpc.aio server, with a Python client playing Envoy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from xds_fixtures import eventually, names_in, node, request

from tandem.xds import resource_types as rt
from tandem.xds.controlplane import ControlPlane

pytestmark = pytest.mark.asyncio(loop_scope="session")

# By-URL invocation's clusters are in every snapshot (translate/http_endpoints.py).
URL_CLUSTERS = ["url:http", "url:https"]


class FakeEnvoy:
    """One ADS stream: send requests, await responses (with a deadline)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)  # type: ignore[no-untyped-call]
        self.call = stub.StreamAggregatedResources(self._requests())

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (item := await self._outbox.get()) is not None:
            yield item

    def send(self, req: discovery_pb2.DiscoveryRequest) -> None:
        self._outbox.put_nowait(req)

    async def receive(self) -> discovery_pb2.DiscoveryResponse:
        response = await asyncio.wait_for(self.call.read(), 5)
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        return response

    def ack(self, response: discovery_pb2.DiscoveryResponse) -> None:
        self.send(
            request(
                response.type_url,
                names=tuple(names_in(response)) if response.type_url == rt.ENDPOINT else (),
                nonce=response.nonce,
                version=response.version_info,
            )
        )

    def close(self) -> None:
        self._outbox.put_nowait(None)


@pytest_asyncio.fixture(loop_scope="session")
async def control_plane() -> AsyncIterator[ControlPlane]:
    cp = ControlPlane()
    await cp.start()
    yield cp
    await cp.stop(grace=None)


@pytest_asyncio.fixture(loop_scope="session")
async def channel(control_plane: ControlPlane) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(control_plane.address) as ch:
        yield ch


async def test_first_request_without_a_node_is_refused(channel: grpc.aio.Channel) -> None:
    envoy = FakeEnvoy(channel)
    envoy.send(request(rt.CLUSTER))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await envoy.receive()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_node_metadata_is_refused_with_the_reason(
    channel: grpc.aio.Channel, control_plane: ControlPlane
) -> None:
    envoy = FakeEnvoy(channel)
    envoy.send(
        request(rt.CLUSTER, node_=node("a", http_port="3500", identities=control_plane.identities))
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await envoy.receive()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "http_port must be a number" in (err.value.details() or "")


async def test_delta_xds_is_unimplemented(channel: grpc.aio.Channel) -> None:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)  # type: ignore[no-untyped-call]

    async def one() -> AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]:
        yield discovery_pb2.DeltaDiscoveryRequest(type_url=rt.CLUSTER)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stub.DeltaAggregatedResources(one()):
            pass
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_app_b_joining_and_leaving_is_pushed_to_a(
    channel: grpc.aio.Channel, control_plane: ControlPlane
) -> None:
    a = FakeEnvoy(channel)
    a.send(request(rt.CLUSTER, node_=node("a", identities=control_plane.identities)))
    first = await a.receive()
    assert names_in(first) == ["app:a", *URL_CLUSTERS]
    a.ack(first)

    b = FakeEnvoy(channel)
    b.send(request(rt.CLUSTER, node_=node("b", identities=control_plane.identities)))
    assert names_in(await b.receive()) == ["app:a", "app:b", *URL_CLUSTERS]
    joined = await a.receive()
    assert names_in(joined) == ["app:a", "app:b", *URL_CLUSTERS]
    a.ack(joined)

    b.close()
    b.call.cancel()
    left = await a.receive()
    assert names_in(left) == ["app:a", *URL_CLUSTERS]
    assert left.version_info == first.version_info  # content-addressed versions
    a.close()
    a.call.cancel()


async def test_streams_are_counted_and_dropped_when_they_end(
    channel: grpc.aio.Channel, control_plane: ControlPlane
) -> None:
    a = FakeEnvoy(channel)
    a.send(request(rt.CLUSTER, node_=node("a", "a~counted", identities=control_plane.identities)))
    await a.receive()
    assert control_plane.ads.open_streams == 1

    a.close()
    a.call.cancel()

    await eventually(
        lambda: not control_plane.ads.open_streams and not control_plane.registry.mesh().sidecars,
        what="the stream and its sidecar to be dropped",
    )
