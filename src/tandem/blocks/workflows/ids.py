"""Instance id rules, as Dapr applies them when an instance is created."""

from __future__ import annotations

import re
import uuid

import grpc

from tandem.blocks.errors import DaprError

MAX_INSTANCE_ID = 64
_VALID = re.compile(r"[A-Za-z0-9_-]+")


def new_instance_id() -> str:
    return uuid.uuid4().hex


def check_instance_id(instance_id: str) -> None:
    """Refuse an id Dapr refuses: too long, or other than letters, digits, ``_`` and ``-``."""
    if len(instance_id) > MAX_INSTANCE_ID:
        raise DaprError(
            "ERR_INSTANCE_ID_TOO_LONG",
            f"workflow instance ID exceeds the max length of {MAX_INSTANCE_ID} characters",
            http_status=400,
            grpc_status=grpc.StatusCode.INVALID_ARGUMENT,
        )
    if not _VALID.fullmatch(instance_id):
        raise DaprError(
            "ERR_INSTANCE_ID_INVALID",
            f"workflow instance ID '{instance_id}' is invalid: only alphanumeric and "
            "underscore characters are allowed",
            http_status=400,
            grpc_status=grpc.StatusCode.INVALID_ARGUMENT,
        )
