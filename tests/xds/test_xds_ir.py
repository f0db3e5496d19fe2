"""Node metadata → Sidecar, and the Mesh index."""

from __future__ import annotations

import pytest
from xds_fixtures import metadata, sidecar

from tandem.xds.ir import DEFAULT_MAX_BODY_BYTES, Mesh, Sidecar, SidecarMetadataError


def test_struct_numbers_arrive_as_floats_and_defaults_fill_the_rest() -> None:
    parsed = Sidecar.from_node_metadata(
        "a~1", {"app_id": "a", "http_port": 3500.0, "grpc_port": 50001.0, "internal_port": 50002.0}
    )

    assert (parsed.http_port, parsed.grpc_port, parsed.internal_port) == (3500, 50001, 50002)
    assert parsed.namespace == "default"
    assert parsed.app_protocol == "http"
    assert parsed.app_port is None
    assert parsed.internal_address == "127.0.0.1"
    assert parsed.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    # A bootstrap that does not say has no tandem_runtime_http cluster: ext_proc it is.
    assert parsed.api_transport == "ext_proc"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SidecarMetadataError) as err:
        Sidecar.from_node_metadata(
            "x~1",
            {
                "app_id": "bad.id",
                "http_port": True,
                "internal_port": 70000,
                "app_protocol": "thrift",
                "api_transport": "carrier-pigeon",
                "max_body_bytes": 1.5,
            },
        )

    message = str(err.value)
    for fragment in (
        "node 'x~1'",
        "app_id 'bad.id'",
        "http_port must be a number",
        "grpc_port is required",
        "internal_port must be a TCP port",
        "app_protocol 'thrift'",
        "api_transport 'carrier-pigeon' must be one of http, ext_proc",
        "max_body_bytes must be a whole number",
    ):
        assert fragment in message


def test_internal_address_must_be_an_ip_because_eds_does_not_resolve_names() -> None:
    with pytest.raises(SidecarMetadataError, match="internal_address 'host.local'"):
        Sidecar.from_node_metadata("a~1", metadata("a", internal_address="host.local"))


def test_metadata_round_trips() -> None:
    original = sidecar(
        "b",
        app_port=8080,
        app_protocol="grpc",
        api_transport="http",
        metrics_port=9090,
        admin_socket="/tmp/b/admin.sock",
        pid=7,
    )

    assert Sidecar.from_node_metadata(original.node_id, original.to_node_metadata()) == original


def test_mesh_groups_instances_by_app_sorted_by_node_id() -> None:
    b2, b1, a = sidecar("b", "b~2"), sidecar("b", "b~1"), sidecar("a")

    mesh = Mesh.of([b2, a, b1])

    assert mesh.app_ids() == ("a", "b")
    assert mesh.instances("b") == (b1, b2)
    assert mesh.instances("zz") == ()
    assert mesh.get("b~2") == b2


def test_mesh_refuses_a_node_id_twice() -> None:
    with pytest.raises(ValueError, match="once"):
        Mesh.of([sidecar("a"), sidecar("a")])


def test_tokens_are_kept_out_of_repr_and_their_problems_never_echo_them() -> None:
    parsed = sidecar("a", dapr_api_token="s3cret-token", app_api_token="app-s3cret")

    assert parsed.api_token == "s3cret-token"
    assert parsed.app_api_token == "app-s3cret"
    assert "s3cret" not in repr(parsed)
    with pytest.raises(SidecarMetadataError) as err:
        Sidecar.from_node_metadata("a~1", metadata("a", dapr_api_token="has space s3cret"))
    assert "dapr_api_token must be 1-4096 printable ASCII characters" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_access_control_arrives_in_daprs_yaml_shape_and_round_trips() -> None:
    access = {
        "defaultAction": "deny",
        "trustDomain": "public",
        "policies": [
            {
                "appId": "a",
                "namespace": "default",
                "operations": [{"name": "/x/*", "httpVerb": ["get"], "action": "allow"}],
            }
        ],
    }
    parsed = sidecar("b", access_control=access, trust_domain="example.org")

    assert parsed.access_control is not None
    assert parsed.access_control.policies[0].operations[0].http_verbs == ("GET",)
    assert parsed.spiffe_id == "spiffe://example.org/ns/default/b"
    assert Sidecar.from_node_metadata(parsed.node_id, parsed.to_node_metadata()) == parsed


def test_bad_access_control_is_reported_with_its_field() -> None:
    with pytest.raises(SidecarMetadataError, match=r"policies\[0\]\.appId: is required"):
        sidecar("b", access_control={"policies": [{"namespace": "default"}]})


def test_app_facing_settings_round_trip() -> None:
    original = Sidecar.from_node_metadata(
        "s~1",
        metadata(
            "s",
            app_port=8443,
            app_protocol="grpcs",
            app_max_concurrency=4.0,
            app_channel_socket="/run/s/app.sock",
            unix_domain_socket="/tmp/uds",
            api_logging={"path": "/l/s.api.log", "omit_health_checks": True},
            app_health={"socket": "/run/s/app-health.sock", "interval_ms": 5000.0},
        ),
    )

    assert original.app_max_concurrency == 4
    assert original.app_speaks_grpc and original.app_uses_tls and original.app_uses_http2
    assert original.api_logging is not None and original.api_logging.omit_health_checks
    assert original.app_health is not None and original.app_health.interval_ms == 5000
    assert Sidecar.from_node_metadata("s~1", original.to_node_metadata()) == original


def test_bad_app_facing_settings_are_reported() -> None:
    with pytest.raises(SidecarMetadataError) as err:
        Sidecar.from_node_metadata(
            "s~1",
            metadata(
                "s",
                app_max_concurrency=0,
                api_logging={"path": "/l", "obfuscate_urls": "yes"},
                app_health={"socket": "/h"},
            ),
        )

    message = str(err.value)
    for fragment in (
        "app_max_concurrency must be at least 1",
        "api_logging.obfuscate_urls must be a boolean",
        "interval_ms is required",
    ):
        assert fragment in message


def test_observability_settings_round_trip_and_bad_ones_are_named() -> None:
    from tandem.observability.export import TraceExport
    from tandem.resources.configuration import ApiRule
    from tandem.xds.ir import ApiAccess

    original = Sidecar(
        node_id="n",
        app_id="a",
        http_port=3500,
        grpc_port=50001,
        internal_port=50002,
        tracing=TraceExport(
            sampling_rate=0.5,
            exporter="otlp_grpc",
            host="collector",
            port=4317,
            headers=(("x-token", "t"),),
        ),
        runtime_metrics_socket="/tmp/m.sock",
        api_access=ApiAccess(denied=(ApiRule("state", "v1.0", "http"),)),
    )
    assert Sidecar.from_node_metadata("n", original.to_node_metadata()) == original
    bad = {**original.to_node_metadata(), "tracing": {"sampling_rate": 1, "exporter": "jaeger"}}
    with pytest.raises(SidecarMetadataError, match="tracing"):
        Sidecar.from_node_metadata("n", bad)


PROD_RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: prod-only, namespace: prod}
spec:
  policies: {timeouts: {quick: 1s}}
  targets: {apps: {b: {timeout: quick}}}
"""


def test_namespaced_resources_apply_as_the_runtime_loads_them() -> None:
    base = {"app_id": "a", "http_port": 3500, "grpc_port": 50001, "internal_port": 50002}
    files = [{"file": "/r/res.yaml", "yaml": PROD_RESILIENCY}]
    # NAMESPACE unset: Dapr's self-hosted rule loads every namespace's resources.
    unset = Sidecar.from_node_metadata("a~1", {**base, "resources": files})
    assert [r.name for r in unset.resiliencies] == ["prod-only"]
    assert unset.namespace == "default" and "namespace" not in unset.to_node_metadata()
    # NAMESPACE=default: a resource of namespace prod is not this sidecar's.
    default = Sidecar.from_node_metadata(
        "a~1", {**base, "namespace": "default", "resources": files}
    )
    assert default.resiliencies == ()
    prod = Sidecar.from_node_metadata("a~1", {**base, "namespace": "prod", "resources": files})
    assert [r.name for r in prod.resiliencies] == ["prod-only"]
    # The same rule on a hot reload.
    pairs = tuple((f["file"], f["yaml"]) for f in files)
    assert [r.name for r in unset.with_resource_files(pairs).resiliencies] == ["prod-only"]
    assert default.with_resource_files(pairs).resiliencies == ()
