"""Envoy for one sidecar: the bootstrap (the only static config) and the process helper."""

from tandem.envoy.admin import AdminError, AdminResponse, admin_request
from tandem.envoy.binary import EnvoyNotFoundError, envoy_binary
from tandem.envoy.bootstrap import bootstrap_yaml, new_node_id, render_bootstrap
from tandem.envoy.process import EnvoyError, EnvoyProcess

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
