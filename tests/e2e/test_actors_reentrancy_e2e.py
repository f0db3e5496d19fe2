"""Reentrancy with the SDK: A -> B -> A completes when the host enables reentrancy, and
deadlocks until the caller's timeout when it does not (as in Dapr); a chain deeper than
maxStackDepth is refused with ERR_ACTOR_STACK_DEPTH.

One actor type has one host app at a time (as in Dapr), so the two hosts take turns."""

from __future__ import annotations

import time

import pytest
from actors_harness import ClientFailed, actor_host, client

# The SDK's calls time out after 3 s (inner actor calls and the client alike).
TIMEOUT = {"DAPR_HTTP_TIMEOUT_SECONDS": "3"}


def test_reentrancy_as_dapr_has_it(tandem_home):
    log = tandem_home / "reentrancy.jsonl"
    reentrant = actor_host(
        tandem_home, "reentrant-host", "re", log, env={"REENTRANT_DEPTH": "3", **TIMEOUT}
    )
    try:
        assert client(reentrant, "chain", "re-a", "re-b", "re-a") == ["re-a", "re-b", "re-a"]
        with pytest.raises(ClientFailed) as err:
            client(reentrant, "chain", "d-a", "d-a", "d-a", "d-a")
        assert "ERR_ACTOR_STACK_DEPTH" in str(err.value)
    finally:
        reentrant.stop()

    plain = actor_host(tandem_home, "plain-host", "plain", log, env=TIMEOUT)
    try:
        started = time.monotonic()
        with pytest.raises(ClientFailed):
            client(plain, "chain", "pl-a", "pl-b", "pl-a", env=TIMEOUT)
        assert time.monotonic() - started >= 2.5  # it waited for the turn, then timed out
        # The actors serve again once the abandoned chain has gone.
        assert client(plain, "chain", "pl-a") == ["pl-a"]
    finally:
        plain.stop()
