"""``GET /metrics`` on the metrics port: Envoy's own stats in Prometheus text, nothing more."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from envoy_harness import FakeRuntime, SidecarHandle, free_port, start_fake_runtime, start_sidecar

from tandem.xds.controlplane import ControlPlane


@dataclass
class Metrics:
    sidecar: SidecarHandle
    url: str
    client: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def metrics() -> AsyncIterator[Metrics]:
    workdir = Path(tempfile.mkdtemp(prefix="tm", dir="/tmp"))
    control_plane = ControlPlane()
    ads_address = await control_plane.start()
    runtime_socket = str(workdir / "rt.sock")
    runtime_server = await start_fake_runtime(runtime_socket, FakeRuntime())
    client = httpx.AsyncClient(timeout=10.0)
    port = free_port()
    sidecar = None
    try:
        sidecar = await start_sidecar(
            "m",
            identities=control_plane.identities,
            ads_address=ads_address,
            runtime_socket=runtime_socket,
            workdir=workdir,
            metrics_port=port,
        )
        yield Metrics(sidecar, f"http://127.0.0.1:{port}", client)
    finally:
        await client.aclose()
        if sidecar is not None:
            await sidecar.envoy.stop()
        await runtime_server.stop(None)
        await control_plane.stop(grace=None)
        shutil.rmtree(workdir, ignore_errors=True)


pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_metrics_serves_envoy_stats_in_prometheus_text(metrics: Metrics) -> None:
    # Traffic on the API port shows up in the scrape.
    await metrics.client.get(f"{metrics.sidecar.http}/v1.0/healthz")

    reply = await metrics.client.get(f"{metrics.url}/metrics")

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert "# TYPE envoy_http_downstream_rq_total counter" in reply.text
    assert (
        'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="dapr_http"}' in reply.text
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/stats"), ("GET", "/config_dump"), ("POST", "/quitquitquit"), ("POST", "/metrics")],
)
async def test_metrics_port_exposes_nothing_else_of_the_admin_api(
    metrics: Metrics, method: str, path: str
) -> None:
    reply = await metrics.client.request(method, f"{metrics.url}{path}")

    assert reply.status_code == 404
    # Envoy still runs: the admin was never reached.
    assert (await metrics.client.get(f"{metrics.url}/metrics")).status_code == 200
