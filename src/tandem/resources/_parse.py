"""Reading YAML with line numbers, and a typed cursor over the parsed documents.

Every model parser walks a document through ``Node``: each step knows its file, its
field path (``spec.metadata[2].value``) and its line, so any type or value error can
name all three without the parsers having to thread them by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

from .durations import parse_duration
from .errors import ResourceError


class LineMap(dict[Any, Any]):
    """A YAML mapping that remembers the line of itself and of each of its keys."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class LineList(list[Any]):
    """A YAML sequence that remembers the line of itself and of each item."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int, items: list[Any], item_lines: list[int]) -> None:
        super().__init__(items)
        self.line = line
        self.item_lines = item_lines


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that builds LineMap/LineList and leaves dates as strings.

    Dapr converts YAML to JSON before decoding, so an unquoted ``2024-01-01`` reaches it
    as a string; PyYAML would make it a ``datetime.date``.
    """

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineMap:
    own_pairs = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # resolves `<<: *anchor`; merged pairs come first
    first_own = len(node.value) - own_pairs
    out = LineMap(node.start_mark.line + 1)
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark
            ) from None
        # Keys written twice are a mistake Go's YAML decoder also rejects; keys that
        # override a merged anchor are the point of merging and stay allowed.
        if index >= first_own and key in out and out.key_lines.get(key, -1) > 0:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        # Merged keys get a negative line so they do not count as duplicates above,
        # while abs() still points at where the value was written.
        line = key_node.start_mark.line + 1
        out.key_lines[key] = line if index >= first_own else -line
    return out


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LineList:
    items = [loader.construct_object(child, deep=True) for child in node.value]
    lines = [child.start_mark.line + 1 for child in node.value]
    return LineList(node.start_mark.line + 1, items, lines)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)  # type: ignore[arg-type]
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)  # type: ignore[arg-type]


def load_documents(text: str, file: str) -> list[tuple[int, Any]]:
    """All documents of a YAML stream as (first line, data); empty documents dropped."""
    try:
        docs = list(yaml.load_all(text, Loader=_LineLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context:
            # The context says which construct was open, e.g. a flow list missing its "]".
            started = exc.context_mark
            at = f" started at line {started.line + 1}" if started is not None else ""
            reason = f"{exc.problem} ({exc.context}{at})"
        line = mark.line + 1 if mark is not None else None
        raise ResourceError(file, "", f"invalid YAML: {reason}", line) from None
    except yaml.YAMLError as exc:
        raise ResourceError(file, "", f"invalid YAML: {exc}") from None
    out: list[tuple[int, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        out.append((getattr(doc, "line", 1), doc))
    return out


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def scalar_to_text(value: Any) -> str:
    """Render any YAML value the way Dapr's free-form metadata values are rendered.

    Dapr stores component metadata values as raw JSON and reads them back as strings:
    ``true`` becomes ``"true"``, ``6379`` becomes ``"6379"``, a nested object its JSON.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Node:
    """One value inside one document, with where it came from.

    A missing key and an explicit YAML null are the same thing (Go decodes both to the
    zero value), so ``value is None`` means "not set".
    """

    file: str
    path: str
    value: Any
    line: int | None = None

    @classmethod
    def root(cls, file: str, value: Any, line: int | None = None) -> Node:
        return cls(file, "", value, line)

    def error(self, reason: str) -> ResourceError:
        return ResourceError(self.file, self.path, reason, self.line)

    @property
    def present(self) -> bool:
        return self.value is not None

    # -- structure ---------------------------------------------------------------

    def _mapping(self) -> dict[Any, Any]:
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {_describe(self.value)}")
        return self.value

    def get(self, key: str) -> Node:
        mapping = self._mapping()
        line = self.line
        if isinstance(mapping, LineMap):
            line = abs(mapping.key_lines.get(key, mapping.line))
        path = f"{self.path}.{key}" if self.path else key
        return Node(self.file, path, mapping.get(key), line)

    def entries(self) -> Iterator[tuple[str, Node]]:
        """The (key, value) pairs of a mapping whose keys are user-chosen names."""
        for key in self._mapping():
            if not isinstance(key, str):
                raise self.error(f"keys must be strings, got {_describe(key)}")
            yield key, self.get(key)

    def items(self) -> list[Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {_describe(self.value)}")
        lines = self.value.item_lines if isinstance(self.value, LineList) else None
        return [
            Node(self.file, f"{self.path}[{i}]", item, lines[i] if lines else self.line)
            for i, item in enumerate(self.value)
        ]

    def require_present(self) -> Node:
        if self.value is None:
            raise self.error("is required")
        return self

    # -- scalars -----------------------------------------------------------------

    def optional_text(self) -> str | None:
        if self.value is None:
            return None
        if not isinstance(self.value, str):
            hint = " (quote it)" if isinstance(self.value, bool | int | float) else ""
            raise self.error(f"expected a string, got {_describe(self.value)}{hint}")
        return self.value

    def text(self, default: str = "") -> str:
        value = self.optional_text()
        return default if value is None else value

    def required_text(self) -> str:
        value = self.optional_text()
        if value is None or not value.strip():
            raise self.error("is required")
        return value

    def boolean(self, default: bool = False) -> bool:
        if self.value is None:
            return default
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {_describe(self.value)}")
        return self.value

    def optional_integer(self) -> int | None:
        if self.value is None:
            return None
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.error(f"expected an integer, got {_describe(self.value)}")
        return self.value

    def integer(self, default: int, *, minimum: int | None = None) -> int:
        value = self.optional_integer()
        if value is None:
            return default
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        return value

    def optional_duration(self) -> timedelta | None:
        if self.value is None:
            return None
        if not isinstance(self.value, str):
            raise self.error(
                f"expected a duration string like 5s or 1m30s, got {_describe(self.value)}"
            )
        try:
            value = parse_duration(self.value)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        if value < timedelta(0):
            raise self.error(f"duration {self.value!r} must not be negative")
        return value

    def duration(self, default: timedelta) -> timedelta:
        value = self.optional_duration()
        return default if value is None else value

    def choice(self, options: tuple[str, ...], default: str) -> str:
        """One of ``options``, matched case-insensitively (Dapr lower-cases these)."""
        value = self.optional_text()
        if value is None or value == "":
            return default
        folded = value.lower()
        for option in options:
            if option.lower() == folded:
                return option
        raise self.error(f"must be one of {', '.join(options)}, got {value!r}")

    def text_list(self) -> tuple[str, ...]:
        return tuple(item.text() for item in self.items())

    def text_map(self) -> dict[str, str]:
        return {key: node.text() for key, node in self.entries()}

    def plain(self) -> Any:
        """The value as plain dicts/lists, for free-form blocks kept as data."""
        return _plain(self.value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
