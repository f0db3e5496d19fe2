"""An HTTP app for the app-facing flag tests (health checks, max concurrency, TLS).

Usage: python app_side_app.py PORT TOPIC [CERT KEY]   (with CERT and KEY it serves HTTPS)

- ``GET /healthz``: 200 while healthy, 503 after ``POST /control/unhealthy`` (until
  ``POST /control/healthy``); every probe is counted since the last switch.
- ``GET /dapr/subscribe``: one subscription, pubsub ``pubsub``, TOPIC, route ``/orders``.
- ``POST /orders``: records the event's ``data.id``; ``data.delay`` (s) makes it slow.
- ``GET|POST /work?delay=S``: answers ``{"ok": true, "tls": bool}`` after S seconds.
- ``GET /stats``: ``{"probes": n, "received": [...], "max_in_flight": n}``; requests
  to /orders and /work count as in flight while they run.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
STATE: dict[str, Any] = {
    "healthy": True,
    "probes": 0,
    "received": [],
    "in_flight": 0,
    "max_in_flight": 0,
}


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    topic = ""
    tls = False

    def _send(self, status: int, value: object = None) -> None:
        body = json.dumps(value).encode() if value is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _busy(self, seconds: float) -> None:
        with LOCK:
            STATE["in_flight"] += 1
            STATE["max_in_flight"] = max(STATE["max_in_flight"], STATE["in_flight"])
        try:
            time.sleep(seconds)  # the app is busy, which is what these tests look at
        finally:
            with LOCK:
                STATE["in_flight"] -= 1

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        if url.path == "/healthz":
            with LOCK:
                STATE["probes"] += 1
                healthy = STATE["healthy"]
            self._send(200 if healthy else 503, {"healthy": healthy})
        elif url.path == "/dapr/subscribe":
            self._send(200, [{"pubsubname": "pubsub", "topic": self.topic, "route": "/orders"}])
        elif url.path == "/stats":
            with LOCK:
                self._send(200, {k: STATE[k] for k in ("probes", "received", "max_in_flight")})
        elif url.path == "/work":
            self._work(url.query)
        else:
            self._send(404)

    def _work(self, query: str) -> None:
        delay = float(parse_qs(query).get("delay", ["0"])[-1])
        self._busy(delay)
        self._send(200, {"ok": True, "tls": self.tls})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        body = self._body()
        if url.path in ("/control/healthy", "/control/unhealthy"):
            with LOCK:
                STATE["healthy"] = url.path.endswith("/healthy")
                STATE["probes"] = 0
            self._send(200, {})
        elif url.path == "/orders":
            data = body.get("data") if isinstance(body, dict) else None
            data = data if isinstance(data, dict) else {}
            self._busy(float(data.get("delay", 0)))
            with LOCK:
                STATE["received"].append(data.get("id"))
            self._send(200, {"status": "SUCCESS"})
        elif url.path == "/work":
            self._work(url.query)
        else:
            self._send(404)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


if __name__ == "__main__":
    port, App.topic = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), App)
    if len(sys.argv) > 4:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = context.wrap_socket(server.socket, server_side=True)
        App.tls = True
    server.serve_forever()
