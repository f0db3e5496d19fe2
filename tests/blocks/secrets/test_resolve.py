"""secretKeyRef in component metadata: resolved at load, refused by file/field/reason,
and the value never in a message or a repr."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from tandem.blocks.errors import DaprError
from tandem.blocks.metadata import MetadataService
from tandem.blocks.registry import ComponentContext
from tandem.blocks.secrets.resolve import SecretResolver, open_secret_stores
from tandem.blocks.secrets.service import SecretsService
from tandem.blocks.state.service import StateService
from tandem.ext_proc.blocks_wiring import secret_store_reload, state_policy_wrapper
from tandem.ext_proc.reload import RuntimeReloader
from tandem.ext_proc.runtime import Runtime, RuntimeOptions, StartupError
from tandem.resources import ResourceError, load_resources

SECRET = "s3cr3t-value-xyz"
STORE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: files}}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - {{name: secretsFile, value: "{file}"}}
"""
STATE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: cache}}
spec:
  type: state.in-memory
  version: v1
  metadata:
  - {{name: plain, value: x}}
  - name: password
    secretKeyRef: {{name: {name}, key: {key}}}
{auth}
"""


def resources(tmp_path: Path, *, name: str = "redis", key: str = "redis", auth: str = "files"):
    (tmp_path / "secrets.json").write_text(json.dumps({"redis": SECRET, "multi": {"a": "b"}}))
    folder = tmp_path / "res"
    folder.mkdir(exist_ok=True)
    (folder / "a-store.yaml").write_text(STORE.format(file=tmp_path / "secrets.json"))
    auth_line = f"auth: {{secretStore: {auth}}}" if auth else ""
    (folder / "b-state.yaml").write_text(STATE.format(name=name, key=key, auth=auth_line))
    return folder


def resolve(folder: Path):
    loaded = load_resources([folder], app_id="app")
    service, resolver = open_secret_stores(loaded.components, ComponentContext(app_id="app"))
    return service, resolver.spec(loaded.component("cache"))  # type: ignore[arg-type]


@dataclass
class Reloading:
    """A runtime's reload side over ``folder``: its secret stores, state and reloader."""

    secrets: SecretsService
    resolver: SecretResolver
    state: StateService
    metadata: MetadataService
    reloader: RuntimeReloader

    @classmethod
    def start(cls, folder: Path, home: Path, *, reload_secret_stores: bool) -> Reloading:
        loaded = load_resources([folder], app_id="app")
        ctx = ComponentContext(app_id="app", home=home)
        secrets, resolver = open_secret_stores(loaded.components, ctx)
        specs = [resolver.spec(c) for c in loaded.components if c.block == "state"]
        state = StateService.from_specs(specs, ctx)
        metadata = MetadataService("app")
        reloader = RuntimeReloader(
            paths=(folder,),
            config=None,
            app_id="app",
            namespace=None,
            ctx=ctx,
            state=state,
            metadata=metadata,
            wrap=state_policy_wrapper,
            resolve=resolver.spec,
            swaps=(secret_store_reload(secrets, ctx),) if reload_secret_stores else (),
        )
        reloader.start(loaded)
        return cls(secrets, resolver, state, metadata, reloader)

    async def close(self) -> None:
        await self.reloader.close()
        await self.state.close()
        await self.secrets.close()


def test_a_reference_is_resolved_from_the_named_store(tmp_path: Path) -> None:
    service, spec = resolve(resources(tmp_path))

    assert spec.metadata == {"plain": "x", "password": SECRET}
    assert SECRET not in repr(spec)
    assert SECRET not in repr(service.stores["files"])


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"auth": ""}, "has no auth.secretStore"),
        ({"auth": "vault"}, "secret store 'vault' (auth.secretStore) is not loaded"),
        ({"name": "missing", "key": "missing"}, "secret 'missing' not found in secret store"),
        ({"name": "redis", "key": "other"}, "secret 'redis' in store 'files' has no key 'other'"),
    ],
)
def test_an_unresolvable_reference_names_file_field_and_reason(
    tmp_path: Path, kwargs: dict[str, str], reason: str
) -> None:
    folder = resources(tmp_path, **kwargs)
    with pytest.raises(ResourceError) as err:
        resolve(folder)

    assert err.value.file.endswith("b-state.yaml")
    assert err.value.field == "spec.metadata[1].secretKeyRef"
    assert reason in err.value.reason
    assert SECRET not in str(err.value)


def test_the_runtime_refuses_to_start_and_logs_no_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = resources(tmp_path, auth="")
    options = RuntimeOptions(
        app_id="app", socket=tmp_path / "rt.sock", home=tmp_path, resources_paths=(folder,)
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StartupError, match=r"b-state.yaml.*spec.metadata\[1\].secretKeyRef"):
        Runtime(options)._load_specs(ComponentContext(app_id="app", home=tmp_path))


def test_a_resolved_component_loads_and_its_value_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = RuntimeOptions(
        app_id="app",
        socket=tmp_path / "rt.sock",
        home=tmp_path,
        resources_paths=(resources(tmp_path),),
    )
    caplog.set_level(logging.DEBUG)
    specs = Runtime(options)._load_specs(ComponentContext(app_id="app", home=tmp_path))

    assert [s.name for s in specs] == ["cache"]
    assert specs[0].metadata["password"] == SECRET
    assert SECRET not in caplog.text


async def test_hot_reload_keeps_resolving_and_keeps_the_last_good_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A state store started with a resolved password is not replaced by one without it
    when an unrelated file changes; a reference that stops resolving changes nothing."""
    folder = resources(tmp_path)
    run = Reloading.start(folder, tmp_path, reload_secret_stores=False)
    state, reloader = run.state, run.reloader
    started = state.components["cache"]

    (folder / "c-other.yaml").write_text("# nothing of Dapr's\n")
    await reloader.check()
    assert state.components["cache"] is started  # same resolved spec: not replaced

    text = (folder / "b-state.yaml").read_text().replace("name: redis, key: redis", "name: x")
    (folder / "b-state.yaml").write_text(text)
    caplog.set_level(logging.WARNING)
    await reloader.check()
    assert state.components["cache"] is started
    assert "secret 'x' not found" in caplog.text
    assert SECRET not in caplog.text
    await run.close()


async def test_hot_reload_replaces_adds_and_removes_secret_stores(tmp_path: Path) -> None:
    """A secret store's YAML changed, added or removed while the runtime serves: the
    secrets API answers from the new store, and a reference in a component reloaded
    afterwards resolves from it."""
    folder = resources(tmp_path)
    (tmp_path / "rotated.json").write_text(json.dumps({"redis": "rotated-value"}))
    run = Reloading.start(folder, tmp_path, reload_secret_stores=True)
    secrets, state, reloader = run.secrets, run.state, run.reloader
    first = secrets.stores["files"]
    try:
        assert await secrets.get("files", "redis", {}) == {"redis": SECRET}

        store_yaml = folder / "a-store.yaml"
        store_yaml.write_text(STORE.format(file=tmp_path / "rotated.json"))
        (folder / "c-second.yaml").write_text(
            STORE.format(file=tmp_path / "secrets.json").replace("name: files", "name: second")
        )
        await reloader.check()
        assert await secrets.get("files", "redis", {}) == {"redis": "rotated-value"}
        assert await secrets.get("second", "redis", {}) == {"redis": SECRET}
        assert secrets.stores["files"] is not first
        assert {c.name for c in run.metadata.components} >= {"files", "second", "cache"}

        # A component loaded from now on resolves its reference from the store now served,
        # and the state component, edited, is rebuilt with it.
        started = state.components["cache"]
        (folder / "b-state.yaml").write_text(
            (folder / "b-state.yaml").read_text().replace("value: x", "value: y")
        )
        await reloader.check()
        assert state.components["cache"] is not started
        cache = load_resources([folder], app_id="app").component("cache")
        assert run.resolver.spec(cache).metadata["password"] == "rotated-value"  # type: ignore[arg-type]

        store_yaml.unlink()
        await reloader.check()
        with pytest.raises(DaprError) as err:
            await secrets.get("files", "redis", {})
        assert err.value.error_code == "ERR_SECRET_STORE_NOT_FOUND"
    finally:
        await run.close()
