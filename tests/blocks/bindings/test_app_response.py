"""Reading Dapr's legacy app response to an input binding event (pure)."""

from __future__ import annotations

from tandem.blocks.bindings.app_response import AppResponse, parse
from tandem.blocks.state.store import SetRequest


def test_a_full_answer() -> None:
    got = parse(
        b'{"storeName":"s","state":[{"key":"k","value":{"a":1}}],"to":["o1","o2"],'
        b'"concurrency":"parallel","data":"x"}'
    )
    assert got == AppResponse("s", (SetRequest("k", b'{"a":1}'),), ("o1", "o2"), True, b'"x"')


def test_answers_that_ask_for_nothing() -> None:
    for body in (b"", b"OK", b"[1]", b'{"status":"SUCCESS"}'):
        assert parse(body) == AppResponse()


def test_unusable_parts_are_named_and_left_out() -> None:
    got = parse(b'{"state":[{"key":"k","value":1},{"nokey":1}],"to":"o1"}')
    assert got.state == () and got.to == ()
    assert len(got.problems) == 3  # a bad item, "to" not a list, state without storeName
