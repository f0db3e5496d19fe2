"""An explicit port that is busy is refused with the port and the process holding it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

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


def test_a_port_not_given_lies_below_the_range_of_outgoing_connections():
    # Another program's outgoing connection can take a port of that range before Envoy binds it.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    taken: set[int] = set()
    chosen = [choose(None, taken, "--dapr-http-port") for _ in range(20)]
    assert all(port < low for port in chosen)
    assert len(set(chosen)) == 20
