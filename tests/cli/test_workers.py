"""`tandem run --runtime-workers N`: the flag's values and each worker's command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tandem.cli.workers import worker_argv, worker_count


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", ""])
def test_a_bad_count_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="1 or more|whole number"):
        worker_count(text)


def test_a_count_of_one_or_more_is_taken() -> None:
    assert worker_count("1") == 1 and worker_count("4") == 4


def test_a_worker_gets_its_own_sockets_and_index_and_not_the_owner_only_ones() -> None:
    run = Path("/r")
    owner = [
        "python", "-m", "tandem.ext_proc", "--app-id", "a",
        "--socket", "/r/runtime.sock",
        "--http-socket", "/r/runtime-http.sock",
        "--metrics-socket", "/r/metrics.sock",
        "--proxy-admin-socket", "/r/admin.sock",
        "--worker-metrics-socket", "/r/metrics-1.sock",
        "--resources-path", "/res",
    ]  # fmt: skip

    argv = worker_argv(owner, run, 2)

    assert argv == [
        "python", "-m", "tandem.ext_proc", "--app-id", "a",
        "--socket", "/r/runtime-2.sock",
        "--http-socket", "/r/runtime-http-2.sock",
        "--metrics-socket", "/r/metrics-2.sock",
        "--resources-path", "/res",
        "--worker-index", "2",
    ]  # fmt: skip
