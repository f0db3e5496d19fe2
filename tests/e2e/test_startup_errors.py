"""A sidecar that cannot start says why, naming the file, the field and the reason."""

from __future__ import annotations

from harness import start_sidecar


def _write(path, text):
    path.write_text(text)
    return path


def test_invalid_component_yaml_fails_start_naming_file_field_and_reason(tandem_home, tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    _write(
        res / "broken.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: store\n"
        "spec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: a\n    value: x\n"
        "  - name: a\n    value: y\n",
    )
    s = start_sidecar(tandem_home, "broken", "--resources-path", str(res), wait=False)
    assert s.proc.wait(60) != 0
    out = s.text()
    assert "broken.yaml" in out
    assert "spec.metadata" in out
    assert "duplicate" in out.lower()


def test_invalid_config_file_fails_start(tandem_home, tmp_path):
    cfg = _write(
        tmp_path / "config.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\n"
        "spec:\n  tracing:\n    samplingRate: 1\n",
    )
    s = start_sidecar(tandem_home, "badcfg", "--config", str(cfg), wait=False)
    assert s.proc.wait(60) != 0
    out = s.text()
    assert "config.yaml" in out and "samplingRate" in out


def test_unknown_component_type_fails_start(tandem_home, tmp_path):
    res = tmp_path / "res2"
    res.mkdir()
    _write(
        res / "odd.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: odd\n"
        "spec:\n  type: state.nosuchstore\n  version: v1\n",
    )
    s = start_sidecar(tandem_home, "odd", "--resources-path", str(res), wait=False)
    assert s.proc.wait(60) != 0
    assert "state.nosuchstore" in s.text()


def test_command_that_does_not_exist_is_reported(tandem_home):
    s = start_sidecar(tandem_home, "nocmd", command=["/nonexistent/program"], wait=False)
    assert s.proc.wait(60) != 0
    assert "/nonexistent/program" in s.text()
