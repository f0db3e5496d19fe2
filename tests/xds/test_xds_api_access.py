"""spec.api rules → the Dapr APIs they name (HTTP route versions, gRPC methods)."""

from __future__ import annotations

from tandem.xds.translate.api_access import grpc_apis, http_apis


def test_grpc_methods_map_to_dapr_api_names_and_versions():
    apis = {path.rsplit("/", 1)[1]: (version, name) for version, name, path in grpc_apis()}
    assert apis["GetState"] == ("v1", "state")
    assert apis["ExecuteStateTransaction"] == ("v1", "state")
    assert apis["QueryStateAlpha1"] == ("v1alpha1", "state")
    assert apis["PublishEvent"] == ("v1", "publish")
    assert apis["InvokeService"] == ("v1", "invoke")
    assert apis["GetActorState"] == ("v1", "actors")
    assert apis["GetMetadata"] == ("v1", "metadata")


def test_http_apis_come_from_the_route_templates():
    apis = set(http_apis())
    assert {("v1.0", "state"), ("v1.0", "invoke"), ("v1.0-alpha1", "publish")} <= apis
    assert ("v1.0", "healthz") in apis
