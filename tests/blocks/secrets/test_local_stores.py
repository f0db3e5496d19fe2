"""secretstores.local.file and secretstores.local.env: what each answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.blocks.component_metadata import ComponentConfigError
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.secrets.store import SecretNotFoundError

CTX = ComponentContext(app_id="app")
DOC = {
    "redisPassword": "pw1",
    "db": {"user": "admin", "password": "pw2", "port": 5432, "replicas": ["a", "b"]},
    "flag": True,
}


def file_store(tmp_path: Path, **md: str):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(DOC))
    spec = ComponentSpec(
        "files", "secretstores.local.file", metadata={"secretsFile": str(path), **md}
    )
    return create_component(spec, CTX)


def test_a_flat_file_names_each_leaf_by_its_path(tmp_path: Path) -> None:
    store = file_store(tmp_path)

    assert store.get("redisPassword", {}) == {"redisPassword": "pw1"}
    assert store.get("db:password", {}) == {"db:password": "pw2"}
    assert store.get("db:port", {}) == {"db:port": "5432"}
    assert store.get("db:replicas:1", {}) == {"db:replicas:1": "b"}
    assert store.get("flag", {}) == {"flag": "true"}
    assert set(store.bulk({})) == {
        "redisPassword", "db:user", "db:password", "db:port", "db:replicas:0",
        "db:replicas:1", "flag",
    }  # fmt: skip


def test_the_nested_separator_is_configurable(tmp_path: Path) -> None:
    store = file_store(tmp_path, nestedSeparator=".")

    assert store.get("db.user", {}) == {"db.user": "admin"}
    with pytest.raises(SecretNotFoundError):
        store.get("db:user", {})


def test_multi_valued_makes_each_top_level_key_one_secret(tmp_path: Path) -> None:
    store = file_store(tmp_path, multiValued="true")

    assert store.get("db", {}) == {
        "user": "admin", "password": "pw2", "port": "5432", "replicas:0": "a", "replicas:1": "b",
    }  # fmt: skip
    assert store.get("redisPassword", {}) == {"redisPassword": "pw1"}
    assert sorted(store.bulk({})) == ["db", "flag", "redisPassword"]


def test_a_missing_secret_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(SecretNotFoundError, match="nope"):
        file_store(tmp_path).get("nope", {})


def test_an_unreadable_or_invalid_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    spec = ComponentSpec(
        "files", "secretstores.local.file", metadata={"secretsFile": str(tmp_path / "none.json")}
    )
    with pytest.raises(ComponentConfigError, match="cannot read secretsFile"):
        create_component(spec, CTX)
    bad = tmp_path / "bad.json"
    bad.write_text('{"password": "hunter2",,}')
    spec = ComponentSpec("files", "secretstores.local.file", metadata={"secretsFile": str(bad)})
    with pytest.raises(ComponentConfigError, match="not valid JSON at line 1") as err:
        create_component(spec, CTX)
    assert "hunter2" not in str(err.value)
    with pytest.raises(ComponentConfigError, match="secretsFile is required"):
        create_component(ComponentSpec("files", "secretstores.local.file"), CTX)


def test_env_with_a_prefix_sees_only_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_DB_PASSWORD", "pw")
    monkeypatch.setenv("OTHER_SECRET", "no")
    spec = ComponentSpec("env", "secretstores.local.env", metadata={"prefix": "MYAPP_"})
    store = create_component(spec, CTX)

    assert store.get("DB_PASSWORD", {}) == {"DB_PASSWORD": "pw"}
    with pytest.raises(SecretNotFoundError):
        store.get("OTHER_SECRET", {})
    assert store.bulk({}) == {"DB_PASSWORD": {"DB_PASSWORD": "pw"}}


def test_env_without_a_prefix_keeps_the_runtime_tokens_to_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAPR_API_TOKEN", "token")
    monkeypatch.setenv("PLAIN_SECRET", "value")
    store = create_component(ComponentSpec("env", "secretstores.local.env"), CTX)

    assert store.get("PLAIN_SECRET", {}) == {"PLAIN_SECRET": "value"}
    with pytest.raises(SecretNotFoundError):
        store.get("DAPR_API_TOKEN", {})
    assert "DAPR_API_TOKEN" not in store.bulk({})
