"""``secretstores.local.file``: secrets read once, at start, from a JSON file.

Nested objects are flattened with ``nestedSeparator`` (default ``:``), so
``{"db": {"password": "x"}}`` holds the secret ``db:password``. With ``multiValued: true``
each top-level key is one secret whose keys are its flattened members instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.blocks.component_metadata import ComponentConfigError, as_bool, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.secrets.store import SecretNotFoundError

DEFAULT_SEPARATOR = ":"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Numbers and booleans read back as their JSON text, as the file wrote them.
    return json.dumps(value)


def flatten(value: Any, separator: str, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a:b": "1"}``; a list's items are numbered keys."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {prefix: _text(value)}
    out: dict[str, str] = {}
    for key, item in items:
        out.update(flatten(item, separator, f"{prefix}{separator}{key}" if prefix else key))
    return out


def secrets_of(document: Any, separator: str, multi_valued: bool) -> dict[str, dict[str, str]]:
    """Secret name → its key/value map, from the parsed file."""
    if not isinstance(document, dict):
        raise ComponentConfigError("the secrets file must hold a JSON object")
    if not multi_valued:
        return {name: {name: value} for name, value in flatten(document, separator).items()}
    out: dict[str, dict[str, str]] = {}
    for name, value in document.items():
        out[str(name)] = (
            flatten(value, separator) if isinstance(value, dict | list) else {name: _text(value)}
        )
    return out


@dataclass(frozen=True, slots=True)
class LocalFileSecretStore:
    secrets: Mapping[str, Mapping[str, str]]
    blocking: bool = False

    def __repr__(self) -> str:  # never the values
        return f"LocalFileSecretStore({len(self.secrets)} secrets)"

    def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        found = self.secrets.get(name)
        if found is None:
            raise SecretNotFoundError(f"secret {name} not found")
        return dict(found)

    def bulk(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return {name: dict(value) for name, value in self.secrets.items()}

    def close(self) -> None:
        return None


def create(spec: ComponentSpec, ctx: ComponentContext) -> LocalFileSecretStore:
    md = spec.metadata
    file = lookup(md, "secretsFile")
    if not file:
        raise ComponentConfigError(f"component {spec.name}: metadata secretsFile is required")
    separator = lookup(md, "nestedSeparator") or DEFAULT_SEPARATOR
    path = Path(file).expanduser()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ComponentConfigError(
            f"component {spec.name}: cannot read secretsFile {path}: {exc.strerror or exc}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # Only the position: the parser's message may quote the file's content.
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ComponentConfigError(
            f"component {spec.name}: secretsFile {path} is not valid JSON{where}"
        ) from None
    try:
        secrets = secrets_of(document, separator, as_bool(lookup(md, "multiValued")))
    except ComponentConfigError as exc:
        raise ComponentConfigError(f"component {spec.name}: {path}: {exc}") from None
    return LocalFileSecretStore(secrets)
