"""How a missing ``dapr.io/config`` Configuration is reported, by the runtime (its
container's log) and by the control plane (the refused Envoy stream) alike."""


def missing_message(namespace: str, name: str) -> str:
    return (
        f"Configuration {name!r} not found in namespace {namespace!r} (dapr.io/config): "
        "create it, then restart the pod"
    )
