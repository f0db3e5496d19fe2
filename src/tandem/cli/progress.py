"""Readable start-up progress for the person who typed `tandem run`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(
        self, stream: TextIO | None = None, app_id: str = "", started: float | None = None
    ) -> None:
        self._out = stream or sys.stderr
        self._prefix = f"tandem[{app_id}]" if app_id else "tandem"
        # time.monotonic() of the start; given when `tandem run` continues in a new image.
        self.started = time.monotonic() if started is None else started

    def _emit(self, mark: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self._out.write(f"{self._prefix} {mark} {text} (+{elapsed:.2f}s)\n")
        self._out.flush()

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self._emit("…", f"starting {what}")
        yield

    def done(self, text: str) -> None:
        self._emit("✓", text)

    def step_note(self, text: str) -> None:
        self._emit("…", text)

    def warn(self, text: str) -> None:
        self._emit("!", text)

    def fail(self, text: str) -> None:
        self._emit("✗", text)
