"""Reading resource folders and files into validated models.

Everything here is blocking file I/O; async callers run it in a thread
(``await asyncio.to_thread(load_resources, ...)``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

import yaml

from ._parse import Node, load_documents
from .component import Component, parse_component
from .configuration import Configuration, parse_configuration
from .errors import ResourceError
from .http_endpoint import HTTPEndpoint, parse_http_endpoint
from .resiliency import Resiliency, parse_resiliency
from .subscription import VERSIONS as SUBSCRIPTION_VERSIONS
from .subscription import Subscription, parse_subscription

if TYPE_CHECKING:
    # Their parsers load with the first such document: Envoy enforces them, the runtime only
    # validates them, and most apps have none (issue 21, start-up).
    from .httproute import HTTPRoute
    from .traffic_policy import BackendTrafficPolicy

GROUP = "dapr.io"
SUFFIXES = (".yaml", ".yml")
# kind → apiVersion versions Dapr serves for it.
KINDS = MappingProxyType(
    {
        "Component": ("v1alpha1",),
        "Configuration": ("v1alpha1",),
        "Resiliency": ("v1alpha1",),
        "Subscription": SUBSCRIPTION_VERSIONS,
        "HTTPEndpoint": ("v1alpha1",),
    }
)

# The traffic kinds of other API groups (group → kind → versions): Tandem's own reading of
# the Gateway API and Envoy Gateway (docs in README "Traffic policy").
TRAFFIC_KINDS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "gateway.networking.k8s.io": {"HTTPRoute": ("v1", "v1beta1")},
        "gateway.envoyproxy.io": {"BackendTrafficPolicy": ("v1alpha1",)},
    }
)

Resource: TypeAlias = (
    "Component | Configuration | Resiliency | Subscription | HTTPEndpoint | HTTPRoute"
    " | BackendTrafficPolicy"
)

log = logging.getLogger("tandem.resources")


@dataclass(frozen=True, slots=True)
class ResourceSet:
    """The resources one app loads, in file order (files sorted by name per folder)."""

    components: tuple[Component, ...] = ()
    configurations: tuple[Configuration, ...] = ()
    resiliencies: tuple[Resiliency, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    http_endpoints: tuple[HTTPEndpoint, ...] = ()
    # Enforced by Envoy only (the control plane reads them); the runtime just validates them.
    http_routes: tuple[HTTPRoute, ...] = ()
    traffic_policies: tuple[BackendTrafficPolicy, ...] = ()

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)


def _files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Like Dapr, only the folder's own files: subfolders are not searched.
            files.extend(
                sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ResourceError(path, "", "no such file or directory")
    return files


def resource_files(paths: Sequence[Path]) -> list[Path]:
    """The YAML files ``load_resources`` reads for ``paths``, in the order it reads them."""
    return _files(paths)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ResourceError(
            path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ResourceError(path, "", exc.strerror or str(exc)) from None


def _parse_document(doc: Node) -> Resource | None:
    """The model for one document, or None for a document that is not a Dapr resource."""
    if not isinstance(doc.value, dict):
        return None  # not a manifest at all (a bare list or scalar)
    kind = doc.get("kind").value
    api_node = doc.get("apiVersion")
    api_version = api_node.value
    if api_version is None:
        if isinstance(kind, str) and kind in KINDS:
            raise api_node.error(f"is required for kind {kind} (e.g. {GROUP}/{KINDS[kind][-1]})")
        return None
    if not isinstance(api_version, str):
        return None
    group, _, version = api_version.partition("/")
    if group in TRAFFIC_KINDS:
        return _parse_traffic(doc, group, version)
    if group != GROUP:
        return None  # someone else's manifest in the same folder, e.g. a Deployment
    kind_node = doc.get("kind")
    kind = kind_node.required_text()
    if kind not in KINDS:
        raise kind_node.error(
            f"unknown kind {kind!r} for {api_version} (known: {', '.join(KINDS)})"
        )
    if version not in KINDS[kind]:
        supported = ", ".join(f"{GROUP}/{v}" for v in KINDS[kind])
        raise api_node.error(f"{kind} does not support {api_version!r} (use {supported})")
    match kind:
        case "Component":
            return parse_component(doc)
        case "Configuration":
            return parse_configuration(doc)
        case "Resiliency":
            return parse_resiliency(doc)
        case "Subscription":
            return parse_subscription(doc, version)
        case _:
            return parse_http_endpoint(doc)


def _parse_traffic(doc: Node, group: str, version: str) -> Resource:
    kinds = TRAFFIC_KINDS[group]
    kind_node = doc.get("kind")
    kind = kind_node.required_text()
    if kind not in kinds:
        raise kind_node.error(
            f"{group}/{kind} is not supported by Tandem (of this group: {', '.join(kinds)})"
        )
    if version not in kinds[kind]:
        supported = ", ".join(f"{group}/{v}" for v in kinds[kind])
        raise doc.get("apiVersion").error(f"{kind} does not support {version!r} (use {supported})")
    if kind == "HTTPRoute":
        from .httproute import parse_http_route

        return parse_http_route(doc)
    from .traffic_policy import parse_backend_traffic_policy

    return parse_backend_traffic_policy(doc)


def read_file(path: Path) -> list[Resource]:
    """Every Dapr resource in one YAML file, validated, in document order."""
    return parse_text(_read(path), str(path))


def parse_text(text: str, file: str) -> list[Resource]:
    """Every Dapr resource in ``text`` (the content of ``file``), validated."""
    return [
        resource
        for line, data in load_documents(text, file)
        if (resource := _parse_document(Node.root(file, data, line))) is not None
    ]


# What the control plane needs of a sidecar's resources: it shapes invocations with them.
INVOCATION_KINDS = ("Resiliency", "HTTPEndpoint", "HTTPRoute", "BackendTrafficPolicy")


def invocation_documents(path: Path) -> list[Any]:
    """The Resiliency, HTTPEndpoint and traffic documents of one file as plain data
    (nothing else in it: a file may also hold components with credentials)."""
    return [
        Node.root(str(path), data).plain()
        for _, data in load_documents(_read(path), str(path))
        if isinstance(data, dict) and (data.get("kind") in INVOCATION_KINDS or _is_middleware(data))
    ]


def _is_middleware(data: dict[Any, Any]) -> bool:
    """A middleware Component: compiled into Envoy, so the control plane reads it too."""
    spec = data.get("spec")
    kind_type = spec.get("type") if isinstance(spec, dict) else None
    return (
        data.get("kind") == "Component"
        and isinstance(kind_type, str)
        and kind_type.startswith("middleware.http.")
    )


def invocation_files(paths: Sequence[Path]) -> tuple[tuple[str, str], ...]:
    """(file, YAML of its Resiliency and HTTPEndpoint documents) for each file of ``paths``
    that has any: what the control plane needs to shape this sidecar's invocations."""
    out = []
    for file in _files(paths):
        docs = invocation_documents(file)
        if docs:
            out.append((str(file), yaml.safe_dump_all(docs, sort_keys=False)))
    return tuple(out)


def signature(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """(file, mtime_ns, size) of every resource file: cheap to take, changes with any edit,
    addition or removal (a hot-reload watcher compares these before reading anything)."""
    out = []
    for path in paths:
        try:
            files = _files([path])
        except ResourceError:
            continue  # a missing path: its files are simply gone
        for file in files:
            try:
                st = file.stat()
            except OSError:
                continue
            out.append((str(file), st.st_mtime_ns, st.st_size))
    return tuple(out)


def applies(resource: Resource, app_id: str, namespace: str | None) -> bool:
    """Whether ``resource`` is for this app: its namespace and scopes allow it."""
    return _skip_reason(resource, app_id, namespace) is None


def _skip_reason(resource: Resource, app_id: str, namespace: str | None) -> tuple[int, str] | None:
    """(log level, why) ``resource`` does not apply to this sidecar, or None when it does.

    Dapr's self-hosted rule: with no namespace (``NAMESPACE`` unset) every resource loads,
    whatever its ``metadata.namespace``; with one, only that namespace's and unnamespaced ones.
    A namespace skip is a warning (a component "not configured" later is a surprise); a
    scope skip is routine in a folder shared by several apps.
    """
    if namespace and resource.namespace and resource.namespace != namespace:
        why = f"its namespace {resource.namespace!r} is not this sidecar's ({namespace!r})"
        return logging.WARNING, why
    is_scoped_for = getattr(resource, "is_scoped_for", None)
    if is_scoped_for is not None and not is_scoped_for(app_id):
        return logging.INFO, f"its scopes do not include app {app_id!r}"
    return None


def _check_unique_components(components: list[Component]) -> None:
    seen: dict[str, Component] = {}
    for component in components:
        first = seen.setdefault(component.name, component)
        if first is not component:
            raise ResourceError(
                component.source,
                "metadata.name",
                f"component {component.name!r} is also defined in {first.source}",
            )


def load_resources(
    paths: Sequence[Path], *, app_id: str, namespace: str | None = None
) -> ResourceSet:
    """Load every Dapr resource in ``paths`` (folders of *.yaml/*.yml, or files) for one app.

    Every Dapr document is validated, even one scoped to another app, so a broken file
    fails every app's start rather than only the app it was meant for. Documents of other
    API groups are skipped silently. Resources for another namespace (only when
    ``namespace`` is given) or not scoped for ``app_id`` are dropped, each with a log line.
    """
    # By kind name: the traffic kinds' classes load only with a document of theirs.
    buckets: dict[str, list[Any]] = {
        kind: [] for kind in (*KINDS, *(k for kinds in TRAFFIC_KINDS.values() for k in kinds))
    }
    for path in _files(paths):
        for resource in read_file(path):
            skip = _skip_reason(resource, app_id, namespace)
            if skip is None:
                buckets[type(resource).__name__].append(resource)
            else:
                level, reason = skip
                log.log(
                    level,
                    "%s %s in %s skipped: %s",
                    type(resource).__name__,
                    resource.name,
                    getattr(resource, "source", "") or path,
                    reason,
                )
    _check_unique_components(buckets["Component"])
    return ResourceSet(
        components=tuple(buckets["Component"]),
        configurations=tuple(buckets["Configuration"]),
        resiliencies=tuple(buckets["Resiliency"]),
        subscriptions=tuple(buckets["Subscription"]),
        http_endpoints=tuple(buckets["HTTPEndpoint"]),
        http_routes=tuple(buckets["HTTPRoute"]),
        traffic_policies=tuple(buckets["BackendTrafficPolicy"]),
    )


def load_configuration(path: Path) -> Configuration:
    """The Configuration in ``path`` (``--config FILE``): the first one, if several."""
    if not path.is_file():
        raise ResourceError(path, "", "no such file")
    file = str(path)
    for line, data in load_documents(_read(path), file):
        resource = _parse_document(Node.root(file, data, line))
        if isinstance(resource, Configuration):
            return resource
    raise ResourceError(path, "kind", f"no Configuration document ({GROUP}/v1alpha1) in file")
