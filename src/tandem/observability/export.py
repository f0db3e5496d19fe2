"""Where spans go: the Configuration's ``spec.tracing`` as one resolved exporter.

Pure. Envoy (through node metadata, ``tandem.xds.translate.tracing``) and the runtime
(``tandem.observability.tracing``) read the same :class:`TraceExport`, so a sidecar's spans
all reach one collector with one sampling rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from tandem.resources.configuration import Tracing

# Dapr samples one request in 10,000 when tracing is configured without a rate.
DEFAULT_SAMPLING_RATE = 0.0001

Exporter = Literal["otlp_grpc", "otlp_http", "zipkin"]
EXPORTERS: tuple[Exporter, ...] = ("otlp_grpc", "otlp_http", "zipkin")
_DEFAULT_PATHS: Mapping[str, str] = {
    "otlp_grpc": "",
    "otlp_http": "/v1/traces",
    "zipkin": "/api/v2/spans",
}
_DEFAULT_PORTS: Mapping[str, int] = {"otlp_grpc": 4317, "otlp_http": 4318, "zipkin": 9411}


class TraceExportError(ValueError):
    """An endpoint the exporter cannot use, worded for the Configuration's author."""


@dataclass(frozen=True, slots=True)
class TraceExport:
    """One collector and the sampling rate (0..1) of every span the sidecar makes."""

    sampling_rate: float
    exporter: Exporter | None = None  # None: spans only printed (stdout) or nowhere
    host: str = ""
    port: int = 0
    path: str = ""
    secure: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    stdout: bool = False
    # Trust roots for a secure collector (Envoy needs a file; the runtime uses the system's).
    ca_file: str | None = field(default=None, compare=False)

    @property
    def url(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.host}:{self.port}{self.path}"

    @property
    def on(self) -> bool:
        return self.sampling_rate > 0 and (self.exporter is not None or self.stdout)

    def to_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sampling_rate": self.sampling_rate, "stdout": self.stdout}
        if self.exporter is not None:
            out.update(
                exporter=self.exporter,
                host=self.host,
                port=self.port,
                path=self.path,
                secure=self.secure,
                headers={k: v for k, v in self.headers},
            )
        if self.ca_file:
            out["ca_file"] = self.ca_file
        return out

    @classmethod
    def from_metadata(cls, value: Mapping[str, Any]) -> TraceExport:
        """The inverse of :meth:`to_metadata`; raises TraceExportError on a bad shape."""
        try:
            rate = float(value["sampling_rate"])
            exporter = value.get("exporter")
            if exporter is not None and exporter not in EXPORTERS:
                raise TraceExportError(f"exporter {exporter!r} is not one of {EXPORTERS}")
            headers = value.get("headers") or {}
            port = value.get("port", 0)
            if isinstance(port, float) and port.is_integer():
                port = int(port)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise TraceExportError(f"port {port!r} is not a TCP port")
            return cls(
                sampling_rate=rate,
                exporter=exporter,
                host=str(value.get("host", "")),
                port=port,
                path=str(value.get("path", "")),
                secure=bool(value.get("secure", False)),
                headers=tuple((str(k), str(v)) for k, v in dict(headers).items()),
                stdout=bool(value.get("stdout", False)),
                ca_file=value.get("ca_file") or None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TraceExportError):
                raise
            raise TraceExportError(f"tracing metadata is malformed: {exc}") from None


def _endpoint(
    address: str, exporter: Exporter, secure: bool, what: str
) -> tuple[str, int, str, bool]:
    """(host, port, path, secure) of ``host:port`` or a URL (``https`` means secure)."""
    text = address.strip()
    if "://" not in text:
        text = f"{'https' if secure else 'http'}://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise TraceExportError(f"{what} {address!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TraceExportError(f"{what} {address!r} is not host:port or an http(s) URL")
    path = parts.path.rstrip("/") or _DEFAULT_PATHS[exporter]
    if exporter == "otlp_grpc":
        path = ""  # gRPC has its own method path
    return (
        parts.hostname,
        port if port is not None else _DEFAULT_PORTS[exporter],
        path,
        secure or parts.scheme == "https",
    )


def trace_export(tracing: Tracing, *, ca_file: str | None = None) -> TraceExport | None:
    """The exporter ``spec.tracing`` names, or None when tracing is not configured.

    OpenTelemetry wins over Zipkin when both are given (as in Dapr, one exporter is used).
    """
    rate = DEFAULT_SAMPLING_RATE if tracing.sampling_rate is None else tracing.sampling_rate
    otel, zipkin = tracing.otel, tracing.zipkin_endpoint
    if otel is None and zipkin is None and not tracing.stdout:
        return None
    if otel is not None:
        exporter: Exporter = "otlp_grpc" if otel.protocol == "grpc" else "otlp_http"
        host, port, path, secure = _endpoint(
            otel.endpoint_address, exporter, otel.is_secure, "spec.tracing.otel.endpointAddress"
        )
        for h in otel.headers:
            if h.value is None:
                raise TraceExportError(
                    f"spec.tracing.otel.headers {h.name!r}: secretKeyRef is not supported "
                    "here yet; give the value"
                )
        return TraceExport(
            sampling_rate=rate,
            exporter=exporter,
            host=host,
            port=port,
            path=path,
            secure=secure,
            headers=tuple((h.name, h.value or "") for h in otel.headers),
            stdout=tracing.stdout,
            ca_file=ca_file if secure else None,
        )
    if zipkin is not None:
        host, port, path, secure = _endpoint(
            zipkin, "zipkin", False, "spec.tracing.zipkin.endpointAddress"
        )
        return TraceExport(
            sampling_rate=rate,
            exporter="zipkin",
            host=host,
            port=port,
            path=path,
            secure=secure,
            stdout=tracing.stdout,
            ca_file=ca_file if secure else None,
        )
    return TraceExport(sampling_rate=rate, stdout=True)
