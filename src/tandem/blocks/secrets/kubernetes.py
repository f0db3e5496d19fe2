"""``secretstores.kubernetes``: Kubernetes Secrets of the sidecar's namespace (lightkube).

A secret answers every key of its ``data`` (base64-decoded) and ``stringData``. The
namespace is the request's ``metadata.namespace``, else the component's
``defaultNamespace``, else the sidecar's. Configuration comes from the pod's service
account inside a cluster, else from ``kubeconfigPath`` / ``~/.kube/config``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tandem.blocks.component_metadata import ComponentConfigError, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.secrets.store import SecretNotFoundError


def decode(secret: Any) -> dict[str, str]:
    """Key → text of one Secret object (``data`` is base64; text is read as UTF-8)."""
    out = {
        key: base64.b64decode(value).decode("utf-8", errors="replace")
        for key, value in (secret.data or {}).items()
    }
    out.update(getattr(secret, "stringData", None) or {})
    return out


@dataclass(slots=True)
class KubernetesSecretStore:
    client: Any  # lightkube.Client
    namespace: str
    blocking: bool = True

    def __repr__(self) -> str:
        return f"KubernetesSecretStore(namespace={self.namespace!r})"

    def _namespace(self, metadata: Mapping[str, str]) -> str:
        return metadata.get("namespace") or self.namespace

    def get(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Secret

        try:
            secret = self.client.get(Secret, name=name, namespace=self._namespace(metadata))
        except ApiError as exc:
            if exc.status.code == 404:
                raise SecretNotFoundError(f"secret {name} not found") from None
            raise RuntimeError(f"kubernetes API: {exc.status.reason or exc.status.code}") from None
        return decode(secret)

    def bulk(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        from lightkube.resources.core_v1 import Secret

        return {
            s.metadata.name: decode(s)
            for s in self.client.list(Secret, namespace=self._namespace(metadata))
            if s.metadata is not None and s.metadata.name
        }

    def close(self) -> None:
        self.client.close()


def client_config(kubeconfig: str | None) -> Any:
    from lightkube import KubeConfig
    from lightkube.core.exceptions import ConfigError

    try:
        if kubeconfig:
            return KubeConfig.from_file(kubeconfig)
        return KubeConfig.from_env()
    except (ConfigError, OSError) as exc:
        raise ComponentConfigError(f"no Kubernetes configuration found: {exc}") from None


def create(spec: ComponentSpec, ctx: ComponentContext) -> KubernetesSecretStore:
    try:
        from lightkube import Client
    except ImportError:
        raise ComponentConfigError(
            f"component {spec.name}: secretstores.kubernetes needs lightkube "
            "(pip install 'tandem[kubernetes]')"
        ) from None
    config = client_config(lookup(spec.metadata, "kubeconfigPath"))
    namespace = lookup(spec.metadata, "defaultNamespace") or ctx.namespace or "default"
    return KubernetesSecretStore(Client(config=config, namespace=namespace), namespace)
