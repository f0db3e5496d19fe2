"""A pod's ``dapr.io/config``, Envoy's side: the named Configuration of the pod's namespace,
read from the control plane's copy of the cluster and applied to the sidecar. Pure.

The runtime reads the same object: the ``tandem-resources`` container writes it into the
runtime's resources folder and the injector points ``--config`` at that file. Both follow
the object as it is edited (the runtime by its hot reload, Envoy through
:class:`tandem.k8s.watchers.ClusterFeed`), so the two never run different Configurations
for long, and never different names.

The sidecar's SPIFFE identity is enrolled in the default trust domain (the enrolment runs
before the Configuration reaches the pod): a Configuration asking for another trust domain
is refused, by object, field and reason, rather than half applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from tandem.k8s.config_name import missing_message
from tandem.k8s.mesh_sources import document, resource_files
from tandem.observability.export import TraceExportError
from tandem.resources import Configuration, ResourceError
from tandem.resources.loader import parse_text
from tandem.xds.configuration_metadata import configuration_metadata, system_ca_file
from tandem.xds.configuration_metadata import trust_domain as trust_domain_of
from tandem.xds.ir import Sidecar, configuration_source


def find(
    objects: Iterable[Mapping[str, Any]], namespace: str, name: str
) -> Mapping[str, Any] | None:
    """The Configuration ``name`` of ``namespace`` among the watched objects."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        if (
            obj.get("kind") == "Configuration"
            and meta.get("namespace") == namespace
            and meta.get("name") == name
        ):
            return obj
    return None


def parse(obj: Mapping[str, Any], source: str) -> Configuration:
    """The object through the runtime's own parser; ResourceError names ``source``."""
    text = yaml.safe_dump(document(obj), sort_keys=True)
    for resource in parse_text(text, source):
        if isinstance(resource, Configuration):
            return resource
    raise ResourceError(source, "kind", "not a Configuration")


def apply_configuration(sidecar: Sidecar, objects: Iterable[Mapping[str, Any]]) -> Sidecar:
    """``sidecar`` under its ``dapr.io/config`` (unchanged without one). Raises
    ResourceError when the Configuration is missing, invalid or cannot apply."""
    if sidecar.configuration is None:
        return sidecar
    name, namespace = sidecar.configuration, sidecar.namespace
    source = configuration_source(namespace, name)
    obj = find(objects, namespace, name)
    if obj is None:
        raise ResourceError(source, "", missing_message(namespace, name))
    configuration = parse(obj, source)
    wanted = trust_domain_of(configuration)
    if wanted != sidecar.trust_domain:
        raise ResourceError(
            source,
            "spec.accessControl.trustDomain",
            f"{wanted!r} is not supported in Kubernetes yet: pods are enrolled in the "
            f"{sidecar.trust_domain!r} trust domain (leave it out or set it to "
            f"{sidecar.trust_domain!r})",
        )
    try:
        metadata = configuration_metadata(configuration, ca_file=system_ca_file())
    except TraceExportError as exc:
        raise ResourceError(source, "spec.tracing", str(exc)) from None
    return sidecar.with_configuration_metadata(metadata, source)


def with_namespace_files(sidecar: Sidecar, objects: Iterable[Mapping[str, Any]]) -> Sidecar:
    """``sidecar`` with its namespace's invocation-shaping objects; raises ResourceError."""
    files = resource_files(objects, sidecar.namespace)
    return sidecar if files == sidecar.resource_files else sidecar.with_resource_files(files)


def joining(sidecar: Sidecar, objects: Iterable[Mapping[str, Any]]) -> Sidecar:
    """A joining sidecar with its namespace's valid invocation-shaping objects (an invalid
    one is left out: it must not keep the namespace's sidecars from joining; the next watch
    round logs it) and its Configuration. Raises ResourceError for the Configuration."""
    objects = list(objects)
    try:
        with_files = with_namespace_files(sidecar, objects)
    except ResourceError:
        valid = []
        for file in resource_files(objects, sidecar.namespace):
            try:
                sidecar.with_resource_files((file,))
            except ResourceError:
                continue
            valid.append(file)
        with_files = sidecar.with_resource_files(tuple(valid))
    return apply_configuration(with_files, objects)


def resolve(sidecar: Sidecar, objects: Iterable[Mapping[str, Any]]) -> Sidecar:
    """``sidecar`` with its namespace's invocation-shaping objects and its Configuration:
    what it is given again whenever they change. Raises ResourceError."""
    objects = list(objects)
    return apply_configuration(with_namespace_files(sidecar, objects), objects)


def inputs(
    sidecar: Sidecar, objects: Iterable[Mapping[str, Any]]
) -> tuple[tuple[tuple[str, str], ...], dict[str, Any] | None]:
    """What :func:`resolve` reads for ``sidecar``: equal inputs, equal result."""
    objects = list(objects)
    config = None
    if sidecar.configuration is not None:
        obj = find(objects, sidecar.namespace, sidecar.configuration)
        config = document(obj) if obj is not None else None
    return resource_files(objects, sidecar.namespace), config
