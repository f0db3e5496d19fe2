"""An explicit port that is busy is refused with the port and the process holding it."""

from __future__ import annotations

import os
import socket

import pytest

from tandem.cli.ports import PortInUseError, choose


def test_a_busy_explicit_port_names_its_holder():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PortInUseError) as err:
            choose(port, set(), "--dapr-http-port")
    message = str(err.value)
    assert f"--dapr-http-port {port}: the port is already in use by pid {os.getpid()}" in message


def test_a_port_not_given_is_a_free_one_not_yet_taken():
    taken: set[int] = set()
    first = choose(None, taken, "--metrics-port")
    assert first in taken and choose(None, taken, "--metrics-port") != first
