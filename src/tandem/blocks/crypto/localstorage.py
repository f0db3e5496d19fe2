"""``crypto.dapr.localstorage``: keys are files in the folder ``path`` (PEM, JWK or raw
symmetric bytes); a key's name is its file name under that folder. Files are read on each
use, so a replaced key takes effect at once."""

from __future__ import annotations

import logging
from pathlib import Path

from tandem.blocks.component_metadata import ComponentConfigError, lookup
from tandem.blocks.crypto.keys import CryptoKeyError, Key, parse_key
from tandem.blocks.registry import ComponentContext, ComponentSpec

log = logging.getLogger("tandem.runtime")


def create(spec: ComponentSpec, ctx: ComponentContext) -> LocalStorageKeys:
    path = lookup(spec.metadata, "path")
    if not path:
        raise ComponentConfigError(f"component {spec.name}: metadata path is required")
    extra = sorted(k for k in spec.metadata if k.lower() != "path")
    if extra:
        log.warning(
            "component %s (%s): metadata %s not used by this component type",
            spec.name,
            spec.type,
            ", ".join(extra),
        )
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ComponentConfigError(f"component {spec.name}: path {path} is not a folder")
    return LocalStorageKeys(folder)


class LocalStorageKeys:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def get_key(self, name: str) -> Key:
        # A key name never leaves the folder.
        if not name or ".." in name or name.startswith("/"):
            raise CryptoKeyError(f"invalid key name {name!r}")
        path = self.folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CryptoKeyError(f"failed to load key {name!r}: {exc.strerror}") from None
        return parse_key(name, data, path.suffix)

    async def close(self) -> None:
        return None
