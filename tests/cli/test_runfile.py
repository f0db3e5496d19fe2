"""Dapr's multi-app run template → one `tandem run` per app (pure parsing)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tandem.cli.runfile import RunFileError, load, parse


def template(tmp_path: Path, text: str) -> Path:
    for d in ("web", "api"):
        (tmp_path / d).mkdir(exist_ok=True)
    path = tmp_path / "dapr.yaml"
    path.write_text(text)
    return path


def test_fields_become_tandem_run_flags_and_env_merges(tmp_path):
    (tmp_path / "shared").mkdir()
    path = template(
        tmp_path,
        """\
version: 1
common:
  resourcesPaths: [./shared]
  env: {DEBUG: true, LEVEL: common}
apps:
  - appID: web
    appDirPath: ./web/
    appPort: 8080
    appProtocol: grpc
    daprHTTPPort: 3510
    enableApiLogging: true
    logLevel: debug
    env: {LEVEL: app}
    command: ["python3", "app.py"]
  - appDirPath: ./api
""",
    )
    web, api = load(tmp_path).apps  # a folder means its dapr.yaml
    assert web.app_id == "web" and web.app_dir == (tmp_path / "web").resolve()
    args = list(web.args)
    for flag, value in (
        ("--app-port", "8080"),
        ("--app-protocol", "grpc"),
        ("--dapr-http-port", "3510"),
        ("--log-level", "debug"),
        ("--resources-path", str((tmp_path / "shared").resolve())),
    ):
        assert args[args.index(flag) + 1] == value
    assert "--enable-api-logging" in args
    assert args[args.index("--") :] == ["--", "python3", "app.py"]
    assert web.env == {"DEBUG": "true", "LEVEL": "app"}
    assert (web.app_log, web.daprd_log) == ("fileAndConsole", "file")
    assert api.app_id == "api" and "--" not in api.args  # the folder's name; no command
    assert path.exists()


def test_the_app_folders_dapr_conventions_are_used(tmp_path):
    template(tmp_path, "version: 1\napps: [{appID: web, appDirPath: web}]\n")
    (tmp_path / "web" / ".dapr" / "resources").mkdir(parents=True)
    (tmp_path / "web" / ".dapr" / "config.yaml").write_text("kind: Configuration\n")
    [web] = load(tmp_path / "dapr.yaml").apps
    args = list(web.args)
    assert args[args.index("--resources-path") + 1] == str(tmp_path / "web" / ".dapr" / "resources")
    assert args[args.index("--config") + 1] == str(tmp_path / "web" / ".dapr" / "config.yaml")


def test_the_deprecated_resources_path_works_with_a_warning(tmp_path):
    (tmp_path / "comps").mkdir()
    template(
        tmp_path,
        "version: 1\napps: [{appID: web, appDirPath: web, resourcesPath: ./comps}]\n",
    )
    loaded = load(tmp_path)
    assert "--resources-path" in loaded.apps[0].args
    assert any("apps[0].resourcesPath is deprecated" in w for w in loaded.warnings)


@pytest.mark.parametrize(
    ("app", "field", "reason"),
    [
        ({"appDirPath": "web", "runtimePath": "/x"}, "apps[0].runtimePath", "daprd"),
        ({"appDirPath": "web", "bogus": 1}, "apps[0].bogus", "not a field"),
        ({"appDirPath": "web", "appChannelAddress": "10.0.0.2"}, "appChannelAddress", "127"),
        ({"appDirPath": "web", "appLogDestination": "syslog"}, "appLogDestination", "one of"),
        ({"appDirPath": "web", "enableApiLogging": "yes"}, "enableApiLogging", "true or false"),
        ({"appDirPath": "web", "command": "python app.py"}, "command", "list of strings"),
        ({"appDirPath": "missing"}, "apps[0].appDirPath", "not a folder"),
        ({"appID": "web"}, "apps[0].appDirPath", "required"),
    ],
)
def test_what_cannot_run_is_refused_by_file_field_and_reason(tmp_path, app, field, reason):
    path = template(tmp_path, yaml.safe_dump({"version": 1, "apps": [app]}))
    with pytest.raises(RunFileError) as err:
        load(path)
    message = str(err.value)
    assert str(path) in message and field in message and reason in message


def test_the_file_itself_is_checked(tmp_path):
    path = tmp_path / "dapr.yaml"
    for data, field in (
        ({"version": 2, "apps": []}, "version"),
        ({"version": 1}, "apps"),
        ({"version": 1, "apps": [{}], "extra": 1}, "extra"),
    ):
        with pytest.raises(RunFileError, match=field):
            parse(data, path)
    (tmp_path / "web").mkdir()
    twice = {"version": 1, "apps": [{"appDirPath": "web"}, {"appDirPath": "web"}]}
    with pytest.raises(RunFileError, match="appears twice"):
        parse(twice, path)
    with pytest.raises(RunFileError, match="no multi-app run file"):
        load(tmp_path / "nothing-here")


def test_runtime_workers_is_passed_on_and_a_bad_count_refused(tmp_path):
    template(tmp_path, "version: 1\napps:\n  - appDirPath: ./web\n    runtimeWorkers: 2\n")
    args = list(load(tmp_path).apps[0].args)
    assert args[args.index("--runtime-workers") + 1] == "2"
    for bad in ("0", "-1", "two", "true"):
        template(tmp_path, f"version: 1\napps:\n  - appDirPath: ./web\n    runtimeWorkers: {bad}\n")
        with pytest.raises(RunFileError, match=r"apps\[0\]\.runtimeWorkers: must be a whole"):
            load(tmp_path)
