"""A stand-in for the Kubernetes API server: real HTTP, the API's JSON, an in-memory store.

Enough of the API for the control plane's calls through lightkube: GET / LIST / WATCH
(``?watch=true``: chunked JSON events from a resourceVersion, ``410 Gone`` as an ERROR event
once that version is compacted away), POST (409 AlreadyExists), PUT (409 Conflict on a stale
``metadata.resourceVersion``), DELETE, and ``POST tokenreviews`` answered from a table the
test fills. Objects are the JSON the real API server returns (recorded fixtures).
It is the API server's part, not a mock of Tandem's code.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

PLURALS = {
    "Pod": "pods",
    "Secret": "secrets",
    "Lease": "leases",
    "EndpointSlice": "endpointslices",
    "Component": "components",
    "Configuration": "configurations",
    "Resiliency": "resiliencies",
    "Subscription": "subscriptions",
    "HTTPEndpoint": "httpendpoints",
    "HTTPRoute": "httproutes",
    "BackendTrafficPolicy": "backendtrafficpolicies",
}
KINDS = {plural: kind for kind, plural in PLURALS.items()}

Key = tuple[str, str, str, str]  # (group/version, plural, namespace, name)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class ApiServer:
    """Start with :meth:`start`; ``url`` and :meth:`kubeconfig` point lightkube at it."""

    token_reviews: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    # (resourceVersion, group/version, plural, event) in order.
    events: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    compacted: int = 0
    rv: int = 100
    requests: list[str] = field(default_factory=list)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None
    _watch_generation: int = 0

    # --- the test's side -----------------------------------------------------------------

    def start(self) -> ApiServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.end_watches()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "cp", "user": {"token": "control-plane-token"}}],
            "contexts": [
                {
                    "name": "stand-in",
                    "context": {"cluster": "stand-in", "user": "cp", "namespace": namespace},
                }
            ],
            "current-context": "stand-in",
        }
        path.write_text(json.dumps(config))
        return path

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj`` as a client with full rights would."""
        gv, plural, ns, name = self._key_of(obj)
        with self._lock:
            return self._store((gv, plural, ns, name), copy.deepcopy(dict(obj)), force=True)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            for key in list(self.objects):
                if key[1] == PLURALS[kind] and key[2] == namespace and key[3] == name:
                    self._remove(key)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            for key, obj in self.objects.items():
                if key[1] == PLURALS[kind] and key[2] == namespace and key[3] == name:
                    return copy.deepcopy(obj)
        return None

    def compact(self) -> None:
        """Forget the event history: a watch from an older version now gets 410 Gone."""
        with self._lock:
            self.events.clear()
            self.compacted = self.rv

    def end_watches(self) -> None:
        """End every open watch, as the API server does when a watch times out."""
        with self._lock:
            self._watch_generation += 1
            self._lock.notify_all()

    # --- the store -----------------------------------------------------------------------

    @staticmethod
    def _key_of(obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return (
            str(obj["apiVersion"]),
            PLURALS[str(obj["kind"])],
            str(meta.get("namespace") or ""),
            str(meta["name"]),
        )

    def _store(self, key: Key, obj: dict[str, Any], force: bool = False) -> dict[str, Any]:
        existing = self.objects.get(key)
        meta = obj.setdefault("metadata", {})
        if existing is not None and not force:
            wanted = meta.get("resourceVersion")
            if wanted and wanted != existing["metadata"]["resourceVersion"]:
                raise _Reply(
                    409, _status(409, "Conflict", f"{key[3]}: the object has been modified")
                )
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", existing["metadata"]["uid"] if existing else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-11-30T12:00:00Z")
        self.objects[key] = obj
        event = {"type": "MODIFIED" if existing else "ADDED", "object": copy.deepcopy(obj)}
        self.events.append((self.rv, key[0], key[1], event))
        self._lock.notify_all()
        return copy.deepcopy(obj)

    def _remove(self, key: Key) -> dict[str, Any]:
        obj = self.objects.pop(key)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append(
            (self.rv, key[0], key[1], {"type": "DELETED", "object": copy.deepcopy(obj)})
        )
        self._lock.notify_all()
        return obj

    def _matching(self, gv: str, plural: str, ns: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (g, p, n, _), o in sorted(self.objects.items())
            if g == gv and p == plural and (not ns or n == ns)
        ]

    def watch(self, gv: str, plural: str, ns: str, since: int) -> Iterator[dict[str, Any] | None]:
        """Events after ``since``; None when the watch must end."""
        with self._lock:
            generation = self._watch_generation
            if since < self.compacted:
                yield {
                    "type": "ERROR",
                    "object": _status(410, "Expired", f"too old resource version: {since}"),
                }
                return
        sent = since
        while True:
            with self._lock:
                pending = [
                    (rv, e)
                    for rv, g, p, e in self.events
                    if rv > sent
                    and g == gv
                    and p == plural
                    and (not ns or e["object"]["metadata"].get("namespace") == ns)
                ]
                if not pending:
                    if self._watch_generation != generation:
                        return
                    self._lock.wait(timeout=0.5)
                    continue
            for rv, event in pending:
                sent = rv
                yield event


class _Reply(Exception):
    def __init__(self, code: int, body: dict[str, Any]) -> None:
        self.code = code
        self.body = body


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _route(path: str) -> tuple[str, str, str, str]:
    """(group/version, plural, namespace, name) of an API path."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        gv, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"]:
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise _Reply(404, _status(404, "NotFound", path))
    ns = ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    return gv, plural, ns, name


def _handler(api: ApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            value = json.loads(self.rfile.read(length) or b"{}")
            assert isinstance(value, dict)
            return value

        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            api.requests.append(f"{method} {url.path}")
            try:
                gv, plural, ns, name = _route(url.path)
                if method == "POST" and plural == "tokenreviews":
                    review = self._body()
                    token = review["spec"]["token"]
                    status = api.token_reviews.get(
                        token, {"authenticated": False, "error": "invalid bearer token"}
                    )
                    self._send(201, {**review, "status": status})
                elif method == "GET" and query.get("watch") in ("true", "1"):
                    self._stream(gv, plural, ns, int(query.get("resourceVersion") or 0))
                elif method == "GET" and not name:
                    with api._lock:
                        items = api._matching(gv, plural, ns)
                        rv = api.rv
                    kind = KINDS.get(plural, plural) + "List"
                    self._send(
                        200,
                        {
                            "kind": kind,
                            "apiVersion": gv,
                            "metadata": {"resourceVersion": str(rv)},
                            "items": items,
                        },
                    )
                elif method == "GET":
                    with api._lock:
                        obj = api.objects.get((gv, plural, ns, name))
                    if obj is None:
                        raise _Reply(404, _status(404, "NotFound", f'{plural} "{name}" not found'))
                    self._send(200, obj)
                elif method == "POST":
                    obj = self._body()
                    obj.setdefault("metadata", {}).setdefault("namespace", ns)
                    key = (gv, plural, ns, obj["metadata"]["name"])
                    with api._lock:
                        if key in api.objects:
                            raise _Reply(
                                409,
                                _status(
                                    409, "AlreadyExists", f'{plural} "{key[3]}" already exists'
                                ),
                            )
                        obj["metadata"].pop("resourceVersion", None)
                        self._send(201, api._store(key, obj))
                elif method == "PUT":
                    obj = self._body()
                    with api._lock:
                        if (gv, plural, ns, name) not in api.objects:
                            raise _Reply(
                                404, _status(404, "NotFound", f'{plural} "{name}" not found')
                            )
                        self._send(200, api._store((gv, plural, ns, name), obj))
                elif method == "PATCH":
                    patch = self._body()  # a JSON merge patch (RFC 7386)
                    with api._lock:
                        current = api.objects.get((gv, plural, ns, name))
                        if current is None:
                            raise _Reply(
                                404, _status(404, "NotFound", f'{plural} "{name}" not found')
                            )
                        merged = _merge(copy.deepcopy(current), patch)
                        merged["metadata"].pop("resourceVersion", None)
                        self._send(200, api._store((gv, plural, ns, name), merged, force=True))
                elif method == "DELETE":
                    with api._lock:
                        if (gv, plural, ns, name) not in api.objects:
                            raise _Reply(
                                404, _status(404, "NotFound", f'{plural} "{name}" not found')
                            )
                        self._send(200, api._remove((gv, plural, ns, name)))
                else:
                    raise _Reply(405, _status(405, "MethodNotAllowed", method))
            except _Reply as reply:
                self._send(reply.code, reply.body)

        def _stream(self, gv: str, plural: str, ns: str, since: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in api.watch(gv, plural, ns, since):
                    if event is None:
                        break
                    data = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def do_PATCH(self) -> None:  # noqa: N802
            self._serve("PATCH")

    return Handler
