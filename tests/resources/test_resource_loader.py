import pickle
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tandem.resources import ResourceError, ResourceSet, load_resources, read_file

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]


def component(name: str, *, type_: str = "state.in-memory", extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: {name}
        spec:
          type: {type_}
        """
    ) + textwrap.dedent(extra)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


SUBSCRIPTION = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: orders}
spec: {pubsubname: pubsub, topic: orders, routes: {default: /orders}}
"""
RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: resiliency}
spec: {policies: {timeouts: {general: 5s}}, targets: {apps: {b: {timeout: general}}}}
"""
ENDPOINT = """\
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: ext}
spec: {baseUrl: "https://example.com"}
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
"""


def test_folder_loads_every_kind_from_yaml_and_yml_files(tmp_path: Path) -> None:
    folder = tmp_path / "components"
    write(folder, "a-statestore.yaml", component("statestore"))
    write(folder, "b-pubsub.yml", component("pubsub", type_="pubsub.in-memory"))
    write(folder, "subscription.yaml", SUBSCRIPTION)
    write(folder, "resiliency.yaml", RESILIENCY)
    write(folder, "endpoint.YAML", ENDPOINT)
    resources = load_resources([folder], app_id="app1")
    assert [c.name for c in resources.components] == ["statestore", "pubsub"]
    assert [s.name for s in resources.subscriptions] == ["orders"]
    assert [r.name for r in resources.resiliencies] == ["resiliency"]
    assert [e.name for e in resources.http_endpoints] == ["ext"]
    assert resources.configurations == ()
    assert resources.component("pubsub") is resources.components[1]
    assert resources.component("absent") is None


def test_multi_document_file_keeps_dapr_documents_and_skips_others(tmp_path: Path) -> None:
    text = "\n---\n".join(
        [DEPLOYMENT, component("statestore"), "", "# only a comment", SUBSCRIPTION, "- a\n- b"]
    )
    path = write(tmp_path, "all.yaml", text)
    resources = load_resources([path], app_id="app1")
    assert [c.name for c in resources.components] == ["statestore"]
    assert [s.name for s in resources.subscriptions] == ["orders"]


def test_non_yaml_files_and_subfolders_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "not: [yaml")
    write(tmp_path, "statestore.yaml.bak", "not: [yaml")
    write(tmp_path / "nested", "pubsub.yaml", component("pubsub", type_="pubsub.in-memory"))
    write(tmp_path, "statestore.yaml", component("statestore"))
    resources = load_resources([tmp_path], app_id="app1")
    assert [c.name for c in resources.components] == ["statestore"]


def test_several_paths_mix_folders_and_files_in_order(tmp_path: Path) -> None:
    first = write(tmp_path / "one", "x.yaml", component("first"))
    write(tmp_path / "two", "y.yaml", component("second"))
    resources = load_resources([tmp_path / "two", first], app_id="app1")
    assert [c.name for c in resources.components] == ["second", "first"]


def test_resources_scoped_to_other_apps_are_dropped(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", component("mine", extra="scopes: [app1]\n"))
    write(tmp_path, "b.yaml", component("theirs", extra="scopes: [app2]\n"))
    write(tmp_path, "c.yaml", component("everyone"))
    resources = load_resources([tmp_path], app_id="app1")
    assert [c.name for c in resources.components] == ["mine", "everyone"]


def test_resources_of_another_namespace_are_dropped_only_when_a_namespace_is_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        tmp_path,
        "a.yaml",
        component("prod").replace("name: prod", "name: prod\n  namespace: production"),
    )
    write(
        tmp_path,
        "b.yaml",
        component("dflt").replace("name: dflt", "name: dflt\n  namespace: default"),
    )
    write(tmp_path, "c.yaml", component("any"))
    # No namespace (NAMESPACE unset, as under `dapr run`): every component loads.
    everything = load_resources([tmp_path], app_id="a").components
    assert [c.name for c in everything] == ["prod", "dflt", "any"]
    assert [
        c.name for c in load_resources([tmp_path], app_id="a", namespace="default").components
    ] == [
        "dflt",
        "any",
    ]
    caplog.clear()
    names = [
        c.name for c in load_resources([tmp_path], app_id="a", namespace="production").components
    ]
    assert names == ["prod", "any"]
    assert "Component dflt" in caplog.text and "'default'" in caplog.text


def test_duplicate_component_names_error_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", component("statestore"))
    second = write(tmp_path, "b.yaml", component("statestore", type_="state.redis"))
    with pytest.raises(ResourceError) as info:
        load_resources([tmp_path], app_id="app1")
    err = info.value
    assert err.file == str(second)
    assert err.field == "metadata.name"
    assert str(first) in err.reason
    assert "'statestore'" in str(err)


def test_same_component_name_for_different_apps_is_not_a_duplicate(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", component("statestore", extra="scopes: [app1]\n"))
    write(tmp_path, "b.yaml", component("statestore", extra="scopes: [app2]\n"))
    (only,) = load_resources([tmp_path], app_id="app2").components
    assert only.source == str(tmp_path / "b.yaml")


def test_invalid_document_scoped_to_another_app_still_fails(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", component("bad", type_="nonsense", extra="scopes: [app2]\n"))
    with pytest.raises(ResourceError, match="spec.type"):
        load_resources([tmp_path], app_id="app1")


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="no such file or directory") as info:
        load_resources([tmp_path / "absent"], app_id="app1")
    assert info.value.file == str(tmp_path / "absent")


def test_bad_yaml_syntax_names_file_and_parser_line(expect_error: ExpectError) -> None:
    err = expect_error(
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: statestore
        spec:
          type: state.redis
          metadata: [{name: redisHost, value: localhost:6379}
          version: v1
        """,
        "",
        "invalid YAML",
        name="statestore.yaml",
        line=8,
    )
    assert "flow sequence started at line 7" in err.reason


def test_tab_indentation_is_reported_as_yaml_error(expect_error: ExpectError) -> None:
    expect_error("kind: Component\nspec:\n\ttype: state.redis\n", "", "invalid YAML", line=3)


def test_duplicate_yaml_key_is_an_error_with_its_line(expect_error: ExpectError) -> None:
    expect_error(
        component("statestore") + "  type: state.redis\n",
        "",
        "duplicate key 'type'",
        line=7,
    )


def test_yaml_merge_keys_may_override_merged_values(load: Load) -> None:
    resources = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: store}
        spec:
          type: state.redis
          metadata:
          - &host {name: redisHost, value: a}
          - <<: *host
            name: redisUsername
        """
    )
    assert resources.components[0].plain_metadata() == {"redisHost": "a", "redisUsername": "a"}


def test_unknown_kind_under_dapr_group_names_kind_field(expect_error: ExpectError) -> None:
    expect_error(
        "apiVersion: dapr.io/v1alpha1\nkind: Componnet\nmetadata: {name: s}\n",
        "kind",
        "unknown kind 'Componnet' for dapr.io/v1alpha1",
        line=2,
    )


def test_dapr_kind_with_unsupported_version_names_api_version(expect_error: ExpectError) -> None:
    expect_error(
        component("s").replace("v1alpha1", "v2"),
        "apiVersion",
        "Component does not support 'dapr.io/v2' (use dapr.io/v1alpha1)",
    )


def test_dapr_kind_without_api_version_is_an_error(expect_error: ExpectError) -> None:
    expect_error(
        "kind: Component\nmetadata: {name: s}\nspec: {type: state.redis}\n",
        "apiVersion",
        "is required for kind Component",
    )


def test_dapr_kind_under_another_group_is_skipped(load: Load) -> None:
    assert load("apiVersion: example.com/v1\nkind: Component\nmetadata: {}\n").components == ()


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ResourceError, match="not UTF-8") as info:
        load_resources([path], app_id="a")
    assert info.value.file == str(path)


def test_read_file_returns_every_dapr_resource_unfiltered(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", component("a", extra="scopes: [other]\n") + "---\n" + ENDPOINT)
    assert [r.name for r in read_file(path)] == ["a", "ext"]


def test_resource_error_message_reads_file_line_field_reason() -> None:
    err = ResourceError("c.yaml", "spec.metadata[2].value", "expected a string", 14)
    assert str(err) == "c.yaml:14: spec.metadata[2].value: expected a string"
    assert str(ResourceError("c.yaml", "spec", "is required")) == "c.yaml: spec: is required"
    assert str(ResourceError("c.yaml", "", "invalid YAML: x", 3)) == "c.yaml:3: invalid YAML: x"


def test_resource_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(ResourceError("c.yaml", "spec", "bad", 2)))
    assert (err.file, err.field, err.reason, err.line) == ("c.yaml", "spec", "bad", 2)
