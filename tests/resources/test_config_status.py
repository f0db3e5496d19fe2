"""Every Configuration field does something or is named in a warning at start."""

from __future__ import annotations

from tandem.resources.config_status import (
    configuration_warnings,
    denied_component,
    enabled_features,
)
from tandem.resources.configuration import (
    ApiRule,
    Configuration,
    Feature,
    Metrics,
    NameResolution,
    SecretScope,
)


def test_fields_not_honoured_are_each_named_once():
    config = Configuration(
        name="c",
        source="c.yaml",
        secret_scopes=(SecretScope("vault"),),
        name_resolution=NameResolution("mdns"),
        metrics=Metrics(record_error_codes=True),
        api_denied=(ApiRule("state"), ApiRule("state", "v1.0", "http")),
        features=(Feature("Odd", True), Feature("HotReload", True)),
    )
    warnings = configuration_warnings(config)
    for field in (
        "spec.nameResolution",
        "spec.metrics.recordErrorCodes",
        "spec.api.denied[0] (state)",
        "'Odd'",
    ):
        assert len([w for w in warnings if field in w]) == 1, field
    assert all(w.startswith("c.yaml: ") for w in warnings)
    assert not [w for w in warnings if "spec.secrets.scopes" in w]  # honoured
    assert len(warnings) == 4
    assert enabled_features(config) == ("HotReload",)


def test_an_empty_configuration_warns_about_nothing():
    assert configuration_warnings(Configuration(name="c")) == []


def test_components_deny_matches_type_and_optional_version():
    config = Configuration(name="c", denied_components=("state.redis", "bindings.smtp/v1"))
    assert denied_component(config, "state.redis", "v2") == "state.redis"
    assert denied_component(config, "bindings.smtp", "v1") == "bindings.smtp/v1"
    assert denied_component(config, "bindings.smtp", "v2") is None
    assert denied_component(config, "state.sqlite", "v1") is None
