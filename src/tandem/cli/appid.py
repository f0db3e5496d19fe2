"""An app id for `tandem run` without `--app-id`: two random words, like `dapr run` makes."""

from __future__ import annotations

import secrets
from collections.abc import Callable

# Lower-case, no dots (Dapr forbids dots in app ids); 40 x 40 pairs plus a suffix on collision.
_FIRST = (
    "amber", "brave", "calm", "clever", "cosmic", "crisp", "dapper", "eager", "fancy", "gentle",
    "glossy", "happy", "humble", "jolly", "keen", "lively", "lucky", "mellow", "merry", "misty",
    "nimble", "noble", "plucky", "polite", "proud", "quick", "quiet", "rapid", "rosy", "shiny",
    "silent", "snappy", "spry", "steady", "sunny", "swift", "tidy", "witty", "zany", "zesty",
)  # fmt: skip
_SECOND = (
    "badger", "beacon", "bison", "cedar", "comet", "crane", "dingo", "ember", "falcon", "ferret",
    "fjord", "gecko", "harbor", "heron", "iguana", "jackal", "kestrel", "koala", "lagoon", "lemur",
    "lynx", "magpie", "marmot", "meadow", "narwhal", "ocelot", "otter", "panda", "pebble", "quokka",
    "raven", "river", "salmon", "sparrow", "tapir", "tundra", "walrus", "willow", "wombat", "yak",
)  # fmt: skip


def new_app_id(taken: Callable[[str], bool]) -> str:
    """A fresh id for which ``taken`` is false (``taken`` says whether an app id is in use)."""
    while True:
        candidate = f"{secrets.choice(_FIRST)}-{secrets.choice(_SECOND)}"
        if taken(candidate):
            candidate = f"{candidate}-{secrets.token_hex(2)}"
        if not taken(candidate):
            return candidate
