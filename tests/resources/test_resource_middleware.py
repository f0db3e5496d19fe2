"""HTTP middleware: what Tandem compiles into Envoy, and what it refuses by name."""

from collections.abc import Callable

import pytest

from tandem.resources import PipelineHandler, ResourceError, ResourceSet
from tandem.resources.middleware import Bearer, RateLimit, RouterAlias, resolve_pipeline

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]


def _component(type_: str, metadata: str = "[]", name: str = "mw") -> str:
    return f"""
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata: {{name: {name}}}
    spec:
      type: {type_}
      version: v1
      metadata: {metadata}
    """


def test_an_unsupported_middleware_in_a_pipeline_is_refused_by_name(
    expect_error: ExpectError,
) -> None:
    expect_error(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata: {name: c}
        spec:
          httpPipeline:
            handlers: [{name: o, type: middleware.http.oauth2}]
        """,
        "spec.httpPipeline.handlers[0].type",
        "middleware.http.oauth2 is not supported by Tandem",
    )


def _resolve(load: Load, text: str, *handlers: PipelineHandler):
    components = load(text).components
    return resolve_pipeline(handlers, components, source="cfg.yaml", field="spec.httpPipeline")


def test_supported_middleware_resolves(load: Load) -> None:
    text = "---".join(
        [
            _component(
                "middleware.http.bearer",
                '[{name: issuer, value: "https://i.example"}, {name: audience, value: a}]',
                name="auth",
            ),
            _component(
                "middleware.http.ratelimit", "[{name: maxRequestsPerSecond, value: 7}]", "rl"
            ),
            _component(
                "middleware.http.routeralias",
                """[{name: routes, value: '{"/a": "/v1.0/invoke/b/method/a"}'}]""",
                "alias",
            ),
        ]
    )
    resolved = _resolve(
        load,
        text,
        PipelineHandler("auth", "middleware.http.bearer"),
        PipelineHandler("rl", "middleware.http.ratelimit"),
        PipelineHandler("alias", "middleware.http.routeralias"),
    )
    assert [m.settings for m in resolved] == [
        Bearer("https://i.example", "a", None),
        RateLimit(7),
        RouterAlias((("/a", "/v1.0/invoke/b/method/a"),)),
    ]


@pytest.mark.parametrize(
    ("component", "handler", "field", "reason"),
    [
        (
            _component("middleware.http.bearer", "[{name: audience, value: a}]"),
            PipelineHandler("mw", "middleware.http.bearer"),
            "spec.metadata",
            "issuer is required",
        ),
        (
            _component("middleware.http.ratelimit", "[{name: maxRequestsPerSecond, value: x}]"),
            PipelineHandler("mw", "middleware.http.ratelimit"),
            "spec.metadata",
            "maxRequestsPerSecond must be a whole number",
        ),
        (
            _component("middleware.http.uppercase", "[{name: shout, value: yes}]"),
            PipelineHandler("mw", "middleware.http.uppercase"),
            "spec.metadata[0].name",
            "'shout' is not a field of middleware.http.uppercase",
        ),
        (
            _component("middleware.http.uppercase"),
            PipelineHandler("other", "middleware.http.uppercase"),
            "spec.httpPipeline.handlers[0].name",
            "no middleware component named 'other'",
        ),
    ],
)
def test_middleware_refusals_name_file_field_and_reason(
    load: Load, component: str, handler: PipelineHandler, field: str, reason: str
) -> None:
    with pytest.raises(ResourceError) as info:
        _resolve(load, component, handler)
    assert info.value.field == field
    assert reason in info.value.reason


def test_a_pipeline_naming_a_missing_component_is_refused_before_start(
    load: Load, tmp_path
) -> None:
    from tandem.resources import load_configuration
    from tandem.resources.middleware import check_pipelines

    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n"
        "  appHttpPipeline: {handlers: [{name: up, type: middleware.http.uppercase}]}\n"
    )
    with pytest.raises(ResourceError) as info:
        check_pipelines(load_configuration(config), [])
    assert info.value.file == str(config)
    assert info.value.field == "spec.appHttpPipeline.handlers[0].name"
    text = _component("middleware.http.uppercase", name="up")
    check_pipelines(load_configuration(config), [("mw.yaml", text)])
