"""``secretstores.local.env``: the sidecar's environment variables as secrets.

With ``prefix``, only variables starting with it are visible, and a secret's name is the
variable's name without it (``prefix: APP_`` makes ``APP_DB_PASSWORD`` the secret
``DB_PASSWORD``). Without a prefix the bulk answer leaves out the runtime's own tokens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tandem.blocks.component_metadata import lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.secrets.store import SecretNotFoundError

# The sidecar's own credentials are not the app's secrets.
_HIDDEN = frozenset({"DAPR_API_TOKEN", "APP_API_TOKEN"})


@dataclass(frozen=True, slots=True)
class EnvSecretStore:
    prefix: str = ""
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    blocking: bool = False

    def __repr__(self) -> str:  # never the values
        return f"EnvSecretStore(prefix={self.prefix!r})"

    def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        variable = self.prefix + name
        value = None if variable in _HIDDEN else self.environ.get(variable)
        if value is None:
            raise SecretNotFoundError(f"secret {name} not found")
        return {name: value}

    def bulk(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        out = {}
        for variable, value in self.environ.items():
            if variable in _HIDDEN or not variable.startswith(self.prefix):
                continue
            name = variable[len(self.prefix) :]
            if name:
                out[name] = {name: value}
        return out

    def close(self) -> None:
        return None


def create(spec: ComponentSpec, ctx: ComponentContext) -> EnvSecretStore:
    return EnvSecretStore(prefix=lookup(spec.metadata, "prefix") or "")
