"""The control plane's address is a function of the home: the same after every restart."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.xds.record import ads_socket_path


def test_a_short_home_keeps_the_socket_inside_it(tmp_path: Path) -> None:
    home = Path("/tmp") / f"th-{os.getpid()}"
    try:
        path = ads_socket_path(home)
        assert path == home / "run" / "xds.sock"
        assert ads_socket_path(home) == path
        assert (home / "run").stat().st_mode & 0o777 == 0o700
    finally:
        (home / "run").rmdir()
        home.rmdir()


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short $XDG_RUNTIME_DIR, as /run/user/UID is."""
    folder = Path(tempfile.mkdtemp(prefix="xr", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_long_home_gets_a_stable_socket_in_a_private_per_user_directory(
    tmp_path: Path, runtime_dir: Path
) -> None:
    long_home = tmp_path / ("h" * 120)
    other_home = tmp_path / ("g" * 120)

    path = ads_socket_path(long_home)

    assert path == ads_socket_path(long_home)  # stable across restarts
    assert path != ads_socket_path(other_home)  # one per home
    assert len(os.fsencode(path)) < 100
    assert path.parent == runtime_dir / f"tandem-{os.getuid()}"
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_private_directory_owned_by_someone_else_is_refused(
    tmp_path: Path, runtime_dir: Path
) -> None:
    # Another user could have created it first: a symlink stands in for "not ours".
    (runtime_dir / f"tandem-{os.getuid()}").symlink_to(tmp_path)

    with pytest.raises(OSError, match="not a directory owned by this user"):
        ads_socket_path(tmp_path / ("h" * 120))
