"""``secretKeyRef`` in component metadata, resolved once at load from ``auth.secretStore``.

Secret stores open first, in file order (a store may take its own credentials from a
store opened before it). A reference that cannot be resolved refuses the component with
file, field and reason; no message, log line or repr carries a resolved value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.secrets.service import SecretsService
from tandem.blocks.secrets.store import SecretNotFoundError, SecretStore
from tandem.resources import Component, ResourceError, SecretKeyRef
from tandem.resources.configuration import SecretScope

log = logging.getLogger("tandem.secrets")

# In Kubernetes mode Dapr reads references without auth.secretStore from this built-in store.
KUBERNETES_STORE = "kubernetes"
SECRET_STORE_BLOCK = "secretstores"


def lookup_secret(stores: Mapping[str, SecretStore], store_name: str, ref: SecretKeyRef) -> str:
    """The value ``ref`` names in ``stores[store_name]``; ValueError with the reason."""
    store = stores.get(store_name)
    if store is None:
        known = ", ".join(sorted(stores)) or "none"
        raise ValueError(
            f"secret store {store_name!r} (auth.secretStore) is not loaded for this app "
            f"(secret stores: {known})"
        )
    try:
        secret = store.get(ref.name, {})
    except SecretNotFoundError:
        raise ValueError(f"secret {ref.name!r} not found in secret store {store_name!r}") from None
    except Exception as exc:
        raise ValueError(
            f"secret store {store_name!r} failed reading secret {ref.name!r}: {type(exc).__name__}"
        ) from None
    if ref.key not in secret:
        raise ValueError(f"secret {ref.name!r} in store {store_name!r} has no key {ref.key!r}")
    return secret[ref.key]


@dataclass(frozen=True, slots=True)
class SecretResolver:
    """Turns a Component into the ComponentSpec its factory gets, references resolved."""

    stores: Mapping[str, SecretStore]
    kubernetes_mode: bool = False

    def store_for(self, component: Component) -> str | None:
        if component.secret_store:
            return component.secret_store
        return KUBERNETES_STORE if self.kubernetes_mode else None

    def metadata(self, component: Component) -> dict[str, str]:
        out = component.plain_metadata()
        for index, item in enumerate(component.metadata):
            if item.secret_key_ref is None:
                continue
            where = f"spec.metadata[{index}].secretKeyRef"
            store = self.store_for(component)
            if store is None:
                raise ResourceError(
                    component.source,
                    where,
                    f"component {component.name}: {item.name} names a secret but the "
                    "component has no auth.secretStore (self-hosted, there is no default "
                    "secret store)",
                )
            try:
                out[item.name] = lookup_secret(self.stores, store, item.secret_key_ref)
            except ValueError as exc:
                raise ResourceError(
                    component.source, where, f"component {component.name}: {item.name}: {exc}"
                ) from None
        return out

    def spec(self, component: Component) -> ComponentSpec:
        return ComponentSpec(
            name=component.name,
            type=component.type,
            version=component.version,
            metadata=self.metadata(component),
        )


def open_secret_stores(
    components: Sequence[Component],
    ctx: ComponentContext,
    *,
    scopes: Sequence[SecretScope] = (),
    kubernetes_mode: bool = False,
) -> tuple[SecretsService, SecretResolver]:
    """Open every ``secretstores.*`` component (blocking: call from a thread). A store that
    fails to open refuses the start, unless it says ``ignoreErrors: true``."""
    stores: dict[str, SecretStore] = {}
    types: dict[str, str] = {}
    for component in components:
        if component.block != SECRET_STORE_BLOCK:
            continue
        resolver = SecretResolver(dict(stores), kubernetes_mode)
        try:
            store = create_component(resolver.spec(component), ctx)
        except ResourceError:
            raise
        except Exception as exc:
            if component.ignore_errors:
                log.warning("secret store %s not loaded (ignoreErrors): %s", component.name, exc)
                continue
            raise ResourceError(component.source, "spec", f"{component.name}: {exc}") from None
        stores[component.name] = store
        types[component.name] = component.type
    if kubernetes_mode and KUBERNETES_STORE not in stores:
        # Dapr's built-in store in Kubernetes mode: references without auth.secretStore.
        builtin = ComponentSpec(KUBERNETES_STORE, "secretstores.kubernetes")
        try:
            stores[KUBERNETES_STORE] = create_component(builtin, ctx)
            types[KUBERNETES_STORE] = builtin.type
        except Exception as exc:
            log.warning("the built-in kubernetes secret store is not available: %s", exc)
    service = SecretsService(stores=stores, types=types, scopes=tuple(scopes))
    return service, SecretResolver(stores, kubernetes_mode)
