"""Envoy for one sidecar: the bootstrap (the only static config) and the process helper.

The names load on first use: the bootstrap step of `tandem run` imports
``tandem.envoy.bootstrap`` and must not pay for the admin client's HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tandem.envoy.admin import AdminError, AdminResponse, admin_request
    from tandem.envoy.binary import EnvoyNotFoundError, envoy_binary
    from tandem.envoy.bootstrap import bootstrap_yaml, new_node_id, render_bootstrap
    from tandem.envoy.process import EnvoyError, EnvoyProcess

_WHERE = {
    "AdminError": "admin",
    "AdminResponse": "admin",
    "admin_request": "admin",
    "EnvoyNotFoundError": "binary",
    "envoy_binary": "binary",
    "bootstrap_yaml": "bootstrap",
    "new_node_id": "bootstrap",
    "render_bootstrap": "bootstrap",
    "EnvoyError": "process",
    "EnvoyProcess": "process",
}

__all__ = [
    "AdminError",
    "AdminResponse",
    "EnvoyError",
    "EnvoyNotFoundError",
    "EnvoyProcess",
    "admin_request",
    "bootstrap_yaml",
    "envoy_binary",
    "new_node_id",
    "render_bootstrap",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
