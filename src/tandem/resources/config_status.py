"""What Tandem does with each Configuration field, and the warnings for those it cannot
honour (README "Observability": the table of fields). Pure: the runtime logs these once at
start (``tandem run`` prints the runtime's start-up warnings)."""

from __future__ import annotations

from tandem.blocks.workflows.settings import unknown_retention_keys
from tandem.resources.configuration import ApiRule, Configuration, Metrics

# Dapr preview features Tandem knows (recorded in the metadata API's enabledFeatures).
KNOWN_FEATURES = frozenset(
    {
        "ActorStateTTL",
        "AppHealthCheck",
        "HotReload",
        "PubSub.Routing",
        "Resiliency",
        "SchedulerReminders",
        "ServiceInvocationStreaming",
        "WorkflowsClusteredDeployment",
        "proxy.grpc",
    }
)


def _api_rule_warnings(which: str, rules: tuple[ApiRule, ...], source: str) -> list[str]:
    return [
        f"{source}: spec.api.{which}[{i}] ({rule.name}) has no "
        f"{'version' if not rule.version else 'protocol'}: it matches nothing (as in Dapr); "
        "give version and protocol (http or grpc)"
        for i, rule in enumerate(rules)
        if not rule.complete
    ]


def _metrics_warnings(m: Metrics, source: str) -> list[str]:
    later = []
    if m.rules:
        later.append("spec.metrics.rules")
    if m.record_error_codes:
        later.append("spec.metrics.recordErrorCodes")
    if m.http_path_matching:
        later.append("spec.metrics.http.pathMatching")
    if m.http_exclude_verbs:
        later.append("spec.metrics.http.excludeVerbs")
    return [f"{source}: {field} is not honoured by Tandem yet; ignored" for field in later]


def configuration_warnings(config: Configuration) -> list[str]:
    """One line per field that is set but not (yet) honoured, naming file and field."""
    src = config.source or config.name
    out = _api_rule_warnings("allowed", config.api_allowed, src)
    out += _api_rule_warnings("denied", config.api_denied, src)
    out += _metrics_warnings(config.metrics, src)
    out += [
        f"{src}: spec.features {f.name!r} is not a feature Tandem knows; ignored"
        for f in config.features
        if f.name not in KNOWN_FEATURES
    ]
    not_yet = [
        (
            config.name_resolution is not None,
            "spec.nameResolution",
            "the control plane resolves app ids itself",
        ),
        (
            config.mtls != type(config.mtls)(),
            "spec.mtls",
            "mTLS is the control plane's mesh-wide setting (tandem init), not the app's",
        ),
        (
            config.tracing.otel is not None and config.tracing.otel.timeout is not None,
            "spec.tracing.otel.timeout",
            "exports time out after 5 s",
        ),
    ]
    out += [f"{src}: {field} is ignored: {why}" for is_set, field, why in not_yet if is_set]
    out += [
        f"{src}: spec.workflow.stateRetentionPolicy.{key} is not a retention key "
        "(anyTerminal, completed, failed, terminated); ignored"
        for key in unknown_retention_keys(config.workflow.retention)
    ]
    return out


def enabled_features(config: Configuration) -> tuple[str, ...]:
    """Known preview features switched on (the metadata API's enabledFeatures)."""
    return tuple(f.name for f in config.features if f.enabled and f.name in KNOWN_FEATURES)


def denied_component(config: Configuration, type_: str, version: str) -> str | None:
    """The ``spec.components.deny`` entry that refuses a component, if any (``type`` or
    ``type/version``, as Dapr writes them)."""
    for entry in config.denied_components:
        kind, _, only = entry.partition("/")
        if kind == type_ and (not only or only == version):
            return entry
    return None
