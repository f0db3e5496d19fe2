"""The response cache behind a component's ``cacheTTL``: an identical request within the TTL
is answered from memory instead of calling the model again."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tandem.blocks.conversation.model import Request, Result

MAX_ENTRIES = 1024


class ResponseCache:
    def __init__(
        self, ttl: float, clock: Callable[[], float] = time.monotonic, limit: int = MAX_ENTRIES
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._limit = limit
        self._entries: OrderedDict[str, tuple[float, Result]] = OrderedDict()

    @staticmethod
    def key(request: Request) -> str:
        # The dataclasses' repr covers every field, in a fixed order.
        return repr(request)

    def get(self, request: Request) -> Result | None:
        key = self.key(request)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, result = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return result

    def put(self, request: Request, result: Result) -> None:
        key = self.key(request)
        self._entries[key] = (self._clock() + self._ttl, result)
        self._entries.move_to_end(key)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
