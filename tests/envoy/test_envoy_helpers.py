"""render_bootstrap argument checks, envoy_binary, the admin client and EnvoyProcess edges."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.envoy import (
    EnvoyError,
    EnvoyNotFoundError,
    EnvoyProcess,
    envoy_binary,
    new_node_id,
    render_bootstrap,
)
from tandem.envoy.admin import _parse
from tandem.envoy.binary import ENV_OVERRIDE


def _args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "node_id": "a~1",
        "app_id": "a",
        "metadata": {"http_port": 3500, "grpc_port": 50001, "internal_port": 50002},
        "ads_address": "127.0.0.1:41000",
        "runtime_socket": "/tmp/rt.sock",
        "admin_socket": "/tmp/adm.sock",
    }
    return {**args, **overrides}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (pytest's tmp_path can exceed 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_node_ids_are_unique_and_carry_the_app_id() -> None:
    first, second = new_node_id("orders"), new_node_id("orders")

    assert first != second
    assert first.startswith("orders~")


def test_bootstrap_fills_node_sockets_and_ads_address() -> None:
    config = render_bootstrap(**_args(ads_address="[::1]:41000", metadata={"metrics_port": None}))

    assert config["node"] == {
        "id": "a~1",
        "cluster": "a",
        # The admin socket is announced so the control plane can route /metrics to it.
        "metadata": {"app_id": "a", "admin_socket": "/tmp/adm.sock"},
    }
    assert config["admin"]["address"]["pipe"]["path"] == "/tmp/adm.sock"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    xds = clusters["xds_cluster"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert xds["endpoint"]["address"]["socket_address"] == {"address": "::1", "port_value": 41000}
    runtime = clusters["tandem_runtime"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert runtime["endpoint"]["address"]["pipe"]["path"] == "/tmp/rt.sock"


def test_a_unix_ads_address_becomes_a_pipe_and_envoy_retries_quickly() -> None:
    config = render_bootstrap(**_args(ads_address="unix:/tmp/th/run/xds.sock"))

    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    xds = clusters["xds_cluster"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert xds["endpoint"]["address"] == {"pipe": {"path": "/tmp/th/run/xds.sock"}}
    grpc_service = config["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"]
    assert grpc_service["retry_policy"]["retry_back_off"]["max_interval"] == "1s"


def test_the_runtime_http_cluster_is_there_only_with_its_socket() -> None:
    plain = render_bootstrap(**_args())
    http = render_bootstrap(
        **_args(metadata={"api_transport": "http"}, runtime_http_socket="/tmp/rt-http.sock")
    )

    assert "tandem_runtime_http" not in {c["name"] for c in plain["static_resources"]["clusters"]}
    clusters = {c["name"]: c for c in http["static_resources"]["clusters"]}
    runtime_http = clusters["tandem_runtime_http"]
    endpoint = runtime_http["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["pipe"]["path"] == "/tmp/rt-http.sock"
    protocol = runtime_http["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert protocol["explicit_http_config"] == {"http_protocol_options": {}}
    assert http["node"]["metadata"]["api_transport"] == "http"


def test_rendering_twice_does_not_share_state() -> None:
    first = render_bootstrap(**_args())
    first["node"]["metadata"]["poison"] = True
    first["static_resources"]["clusters"].clear()

    second = render_bootstrap(**_args())

    assert "poison" not in second["node"]["metadata"]
    assert len(second["static_resources"]["clusters"]) == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ads_address": "localhost"}, "expected host:port"),
        ({"ads_address": "127.0.0.1:0"}, "expected host:port"),
        ({"ads_address": "unix:/tmp/" + "s" * 100}, "ADS socket path is 105 bytes"),
        ({"admin_socket": "/tmp/" + "x" * 100}, "admin socket path is 105 bytes"),
        ({"runtime_socket": ""}, "runtime socket path is empty"),
        ({"metadata": {"app_id": "b"}}, "differs"),
        ({"node_id": ""}, "node_id is empty"),
        ({"metadata": {"api_transport": "http"}}, "needs the runtime's HTTP socket"),
        ({"runtime_http_socket": "/tmp/" + "h" * 100}, "runtime HTTP socket path is 105"),
    ],
)
def test_bad_arguments_are_refused(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_bootstrap(**_args(**override))


def test_envoy_binary_is_the_wheels_executable() -> None:
    path = envoy_binary()

    assert path.is_file() and os.access(path, os.X_OK)


def test_envoy_binary_override_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_OVERRIDE, "/nonexistent/envoy")

    with pytest.raises(EnvoyNotFoundError, match="not an executable"):
        envoy_binary()


def test_admin_client_reads_chunked_bodies() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"4\r\nLIVE\r\n1\r\n\n\r\n0\r\n\r\n"
    )

    response = _parse(raw)

    assert (response.status, response.text()) == (200, "LIVE\n")
    assert response.headers["content-type"] == "text/plain"


@pytest.mark.asyncio(loop_scope="session")
async def test_wait_ready_reports_an_envoy_that_exits_early(short_dir: Path) -> None:
    workdir = short_dir
    config = {
        "admin": {"address": {"pipe": {"path": str(workdir / "adm")}}},
        "static_resources": {"clusters": [{"name": "broken", "type": "NO_SUCH_TYPE"}]},
    }
    envoy = EnvoyProcess(config, log_path=workdir / "envoy.log")
    await envoy.start()
    try:
        with pytest.raises(EnvoyError, match="exited with"):
            await envoy.wait_ready(timeout=15)
    finally:
        assert await envoy.stop() not in (None, 0)
    assert not envoy.running


@pytest.mark.asyncio(loop_scope="session")
async def test_a_static_envoy_becomes_ready_and_serves_stats(short_dir: Path) -> None:
    workdir = short_dir
    config = {"admin": {"address": {"pipe": {"path": str(workdir / "adm")}}}}
    async with EnvoyProcess(config, log_path=workdir / "envoy.log") as envoy:
        await envoy.wait_ready(timeout=15)
        stats = await envoy.stats(r"^server\.")

        assert stats["server.state"] == 0  # LIVE
        assert envoy.pid is not None
    assert envoy.returncode is not None
    assert not (workdir / "adm").exists()
