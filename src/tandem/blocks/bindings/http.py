"""``bindings.http`` (output): one HTTP request per invocation, against ``url``.

Request metadata ``path`` is appended to ``url``; keys starting with an uppercase letter
become request headers. The answer's status and headers come back as response metadata;
a non-2xx answer is a failure unless ``errorIfNot2XX`` is false.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import aiohttp

from tandem.blocks.bindings.binding import BindingError, InvokeRequest, InvokeResponse
from tandem.blocks.component_metadata import (
    ComponentConfigError,
    as_bool,
    as_bytes,
    as_seconds,
    lookup,
)
from tandem.blocks.registry import ComponentContext, ComponentSpec

_VERBS = {
    "create": "POST",
    "post": "POST",
    "get": "GET",
    "put": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "head": "HEAD",
    "options": "OPTIONS",
    "trace": "TRACE",
}
DEFAULT_MAX_BODY = 100 << 20


class HttpBinding:
    operations = frozenset(_VERBS)

    def __init__(
        self,
        url: str,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        error_if_not_2xx: bool = True,
        token: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._max_body = max_body
        self._error_if_not_2xx = error_if_not_2xx
        self._token = token
        self._ssl = ssl_context
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else True),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        verb = _VERBS[request.operation]
        md = request.metadata
        path = md.get("path", "")
        url = self._url + ("/" + path.lstrip("/") if path else "")
        headers = {k: v for k, v in md.items() if k[:1].isupper()}
        for key in ("traceparent", "tracestate"):
            if md.get(key):
                headers[key] = md[key]
        if self._token is not None:
            headers[self._token[0]] = self._token[1]
        error_if_not_2xx = as_bool(md.get("errorIfNot2XX"), self._error_if_not_2xx)
        try:
            async with self._client().request(
                verb, url, data=request.data or None, headers=headers
            ) as resp:
                chunks = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    chunks += chunk
                    if len(chunks) > self._max_body:
                        break
                body = bytes(chunks)
                meta = {k: v for k, v in resp.headers.items()}
                meta["statusCode"] = str(resp.status)
                meta["status"] = f"{resp.status} {resp.reason or ''}".strip()
        except aiohttp.ClientError as exc:
            raise BindingError(f"error invoking {verb} {url}: {exc}") from exc
        if len(body) > self._max_body:
            raise BindingError(f"response body over maxResponseBodySize ({self._max_body})", meta)
        if error_if_not_2xx and not 200 <= resp.status < 300:
            raise BindingError(f"received status code {resp.status}", meta)
        return InvokeResponse(body, meta, resp.headers.get("content-type"))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _pem(value: str) -> str:
    """A PEM value given inline or as a file path (Dapr accepts both)."""
    return value if "-----BEGIN" in value else Path(value).read_text()


def _ssl_context(
    name: str, root: str | None, cert: str | None, key: str | None
) -> ssl.SSLContext | None:
    if not (root or cert or key):
        return None
    if bool(cert) != bool(key):
        raise ComponentConfigError(f"binding {name}: MTLSClientCert and MTLSClientKey go together")
    context = ssl.create_default_context(cadata=_pem(root) if root else None)
    if cert and key:
        # ssl loads a client pair from files only: inline PEM goes through a private temp dir.
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert_file.write_text(_pem(cert))
            key_file.write_text(_pem(key))
            context.load_cert_chain(cert_file, key_file)
    return context


def create(spec: ComponentSpec, ctx: ComponentContext) -> HttpBinding:
    md = spec.metadata
    url = lookup(md, "url")
    if not url:
        raise ComponentConfigError(f"binding {spec.name}: metadata url is required")
    max_body = as_bytes("maxResponseBodySize", lookup(md, "maxResponseBodySize"), DEFAULT_MAX_BODY)
    token_value = lookup(md, "securityToken")
    token = None
    if token_value:
        header = lookup(md, "securityTokenHeader")
        if not header:
            raise ComponentConfigError(
                f"binding {spec.name}: securityToken needs securityTokenHeader"
            )
        token = (header, token_value)
    timeout_text = lookup(md, "responseTimeout")
    return HttpBinding(
        url,
        max_body=max_body,
        error_if_not_2xx=as_bool(lookup(md, "errorIfNot2XX"), True),
        token=token,
        ssl_context=_ssl_context(
            spec.name,
            lookup(md, "MTLSRootCA"),
            lookup(md, "MTLSClientCert"),
            lookup(md, "MTLSClientKey"),
        ),
        timeout=as_seconds("responseTimeout", timeout_text, 0) or None,
    )
