"""An HTTP app whose failures are scripted by the request, for resiliency tests.

Usage: python scripted_app.py PORT [PORT...] (one process, the same counters on every port)

- ``/status/<key>/<code>``: answers ``code``.
- ``/flaky/<key>/<code>/<n>``: answers ``code`` to the first ``n`` requests for ``key``,
  then 200.
- ``/slow/<key>/<ms>``: answers 200 after ``ms`` milliseconds.
- anything else (``/ok``): 200, with the path and headers received.
- ``/_hits`` (GET, asked on the app port directly, never through a sidecar): how many
  requests each key saw and in total, as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HITS: Counter[str] = Counter()
LOCK = threading.Lock()


class Scripted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without this, Nagle and delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True

    def _send(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if parts[0] == "base":  # an HTTPEndpoint's base path: the script follows it
            parts = parts[1:] or ["ok"]
        if parts == ["_hits"]:
            with LOCK:
                self._send(200, dict(HITS))
            return
        key = parts[1] if len(parts) > 1 else parts[0]
        with LOCK:
            HITS[key] += 1
            HITS["_total"] += 1
            seen = HITS[key]
        match parts:
            case ["status", _, code]:
                self._send(int(code), {"key": key, "attempt": seen})
            case ["flaky", _, code, n]:
                self._send(int(code) if seen <= int(n) else 200, {"key": key, "attempt": seen})
            case ["slow", _, ms]:
                time.sleep(int(ms) / 1000)
                self._send(200, {"key": key, "attempt": seen})
            case _:
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._send(
                    200, {"key": key, "attempt": seen, "path": self.path, "headers": headers}
                )

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A caller that gave up (a per-attempt timeout) closes before a slow answer: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


if __name__ == "__main__":
    servers = [Server(("127.0.0.1", int(p)), Scripted) for p in sys.argv[1:]]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()
