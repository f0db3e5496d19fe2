from datetime import timedelta

import pytest

from tandem.resources import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5s", timedelta(seconds=5)),
        ("500ms", timedelta(milliseconds=500)),
        ("1m30s", timedelta(minutes=1, seconds=30)),
        ("1h", timedelta(hours=1)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(days=1)),
        ("1h30m15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("1.5s", timedelta(milliseconds=1500)),
        (".5h", timedelta(minutes=30)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),
        ("1500ns", timedelta(microseconds=2)),  # nanoseconds round to microseconds
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("-2s", timedelta(seconds=-2)),
        ("+2s", timedelta(seconds=2)),
    ],
)
def test_go_duration_parses_to_timedelta(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5 s", "s", "1d", "1.s.", "5sec", "-", "1h-30m", "ten"])
def test_malformed_duration_is_rejected_with_the_input_quoted(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
