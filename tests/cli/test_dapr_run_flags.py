"""`tandem run` parses a `dapr run` command line: sizes as Dapr writes them, optional app id,
flags accepted with a note."""

from __future__ import annotations

import argparse

import pytest

from tandem.cli.appid import new_app_id
from tandem.cli.main import _ignored_flag_notes, _mebibytes, _parser, _run_options


@pytest.mark.parametrize(("text", "mib"), [("4Mi", 4), ("16Mi", 16), ("1Gi", 1024), ("1048576", 1)])
def test_max_body_size_takes_dapr_quantities(text: str, mib: int) -> None:
    assert _mebibytes(text) == mib


@pytest.mark.parametrize("text", ["4M", "0", "512Ki", "4mi", "four"])
def test_max_body_size_refuses_what_it_cannot_honour(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _mebibytes(text)


def test_a_dapr_run_line_parses_without_app_id() -> None:
    a = _parser().parse_args(
        ["run", "--app-port", "6002", "--max-body-size", "8Mi", "--", "python3", "app.py"]
    )
    options = _run_options(a, "generated-id")
    assert options.app_id == "generated-id"
    assert options.max_body_mb == 8
    assert options.command == ("python3", "app.py")
    assert options.graceful_shutdown_seconds == 5


def test_placement_and_scheduler_addresses_are_noted_not_used() -> None:
    a = _parser().parse_args(
        ["run", "--placement-host-address", "localhost:50005", "--scheduler-host-address", ""]
    )
    notes = _ignored_flag_notes(a)
    assert len(notes) == 2
    assert notes[0].startswith("--placement-host-address 'localhost:50005' ignored:")
    assert notes[1].startswith("--scheduler-host-address '' ignored:")


def test_generated_app_ids_avoid_those_in_use() -> None:
    taken = {new_app_id(lambda _: False) for _ in range(50)}
    fresh = new_app_id(lambda candidate: candidate in taken)
    assert fresh not in taken
    assert "." not in fresh and fresh == fresh.lower()
