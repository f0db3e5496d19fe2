"""``bindings.localstorage``: files under ``rootPath`` (create, get, list, delete).

Names resolve inside the root; a name that would leave it (``..``, an absolute path, a
symlink pointing out) is refused rather than clamped, so a typo never writes elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import uuid
from pathlib import Path

import orjson

from tandem.blocks.bindings.binding import BindingError, InvokeRequest, InvokeResponse
from tandem.blocks.component_metadata import ComponentConfigError, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec

FILE_NAME = "fileName"


def decode_data(data: bytes) -> bytes:
    """What to write for the request's ``data``: a JSON string is written unquoted, and a
    string that is valid base64 as its decoded bytes (how Dapr users upload binaries)."""
    try:
        value = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return data
    if not isinstance(value, str):
        return data
    try:
        return base64.b64decode(value, validate=True) if value else b""
    except (binascii.Error, ValueError):
        return value.encode()


class LocalStorage:
    operations = frozenset({"create", "get", "list", "delete"})

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _path(self, name: str) -> Path:
        if not name:
            raise BindingError(f"metadata {FILE_NAME} is required")
        candidate = (self._root / name).resolve()
        if candidate != self._root and self._root not in candidate.parents:
            raise BindingError(f"{FILE_NAME} {name!r} is outside the binding's rootPath")
        return candidate

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        return await asyncio.to_thread(self._invoke, request)

    def _invoke(self, request: InvokeRequest) -> InvokeResponse:
        name = request.metadata.get(FILE_NAME, "")
        match request.operation:
            case "create":
                path = self._path(name or str(uuid.uuid4()))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(decode_data(request.data))
                file_name = str(path.relative_to(self._root))
                return InvokeResponse(
                    orjson.dumps({"fileName": file_name}), {"fileName": file_name}
                )
            case "get":
                path = self._path(name)
                try:
                    return InvokeResponse(
                        path.read_bytes(), content_type="application/octet-stream"
                    )
                except (FileNotFoundError, IsADirectoryError):
                    raise BindingError(f"file {name!r} not found") from None
            case "list":
                base = self._path(name) if name else self._root
                found = sorted(str(Path(d) / f) for d, _, files in os.walk(base) for f in files)
                return InvokeResponse(orjson.dumps(found))
            case "delete":
                path = self._path(name)
                try:
                    path.unlink()
                except FileNotFoundError:
                    raise BindingError(f"file {name!r} not found") from None
                return InvokeResponse()
        raise BindingError(f"unsupported operation {request.operation}")

    async def close(self) -> None:
        return None


def create(spec: ComponentSpec, ctx: ComponentContext) -> LocalStorage:
    root = lookup(spec.metadata, "rootPath")
    if not root:
        raise ComponentConfigError(f"binding {spec.name}: metadata rootPath is required")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return LocalStorage(path)
