"""Helpers for resource tests: write YAML to a temp file, load it, check errors."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tandem.resources import ResourceError, ResourceSet, load_resources

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]


@pytest.fixture
def load(tmp_path: Path) -> Load:
    """Write ``text`` (dedented) to ``tmp_path/name`` and load it for ``app_id``."""

    def _load(
        text: str, *, name: str = "resources.yaml", app_id: str = "app1", namespace: str = "default"
    ) -> ResourceSet:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return load_resources([path], app_id=app_id, namespace=namespace)

    return _load


@pytest.fixture
def expect_error(load: Load, tmp_path: Path) -> ExpectError:
    """Load ``text`` expecting a ResourceError that names the file, field and reason."""

    def _expect(
        text: str, field: str, reason: str, *, name: str = "resources.yaml", line: int | None = None
    ) -> ResourceError:
        with pytest.raises(ResourceError) as info:
            load(text, name=name)
        err = info.value
        assert err.file == str(tmp_path / name)
        assert err.field == field
        assert reason in err.reason
        message = str(err)
        assert message.startswith(str(tmp_path / name))
        assert f": {field}: " in message if field else True
        assert reason in message
        if line is not None:
            assert err.line == line
            assert f"{name}:{line}:" in message
        return err

    return _expect
