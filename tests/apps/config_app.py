"""An HTTP app that records the configuration updates its sidecar pushes to it.

Usage: python config_app.py PORT [PORT...] (one process, one record for every port)

- ``POST /configuration/<store>/<key>``: recorded, answers 200.
- ``GET /_received`` (asked on the app port directly): every update so far, as JSON.
- ``GET .../echo-headers``: the request's headers, as JSON.
- anything else: 200 (the sidecar's readiness probe and subscription discovery).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVED: list[dict[str, object]] = []
LOCK = threading.Lock()


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/configuration/"):
            with LOCK:
                RECEIVED.append({"path": self.path, "body": json.loads(body or b"null")})
        self._send(200, {})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/_received":
            with LOCK:
                self._send(200, list(RECEIVED))
            return
        if self.path.endswith("/echo-headers"):
            self._send(200, {k.lower(): v for k, v in self.headers.items()})
            return
        self._send(200, [] if self.path == "/dapr/subscribe" else {})

    def log_message(self, format: str, *args: object) -> None:
        pass


servers = [ThreadingHTTPServer(("127.0.0.1", int(p)), Recorder) for p in sys.argv[1:]]
for server in servers[1:]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
servers[0].serve_forever()
