"""An HTTP app for input bindings and jobs: logs every request it gets, one JSON line each.

Usage: python binding_app.py PORT LOG

- ``OPTIONS /unserved``: 404 (the app does not serve that binding); other OPTIONS: 200.
- ``POST /flaky``: 500 the first time it sees a ``readTimeUTC`` header value, then 200
  (so one cron tick succeeds only on its retry).
- ``POST /job/fail-*``: 500 (a job whose triggers the app refuses); other POSTs: 200.
- ``POST /legacy``: 200 with Dapr's legacy app response (save ``from-binding`` in
  ``statestore``, send ``"via app response"`` to the ``files`` binding).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SEEN: set[str] = set()


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        status = 200
        if self.command == "OPTIONS" and path == "/unserved":
            status = 404
        elif self.command == "POST" and path == "/flaky":
            tick = self.headers.get("readTimeUTC", "")
            with LOCK:
                status = 200 if tick in SEEN else 500
                SEEN.add(tick)
        elif self.command == "POST" and path.startswith("/job/fail-"):
            status = 500
        answer = b""
        if self.command == "POST" and path == "/legacy":
            answer = json.dumps(
                {
                    "storeName": "statestore",
                    "state": [{"key": "from-binding", "value": {"n": 1}}],
                    "to": ["files"],
                    "data": "via app response",
                }
            ).encode()
        entry = {
            "at": time.time(),
            "method": self.command,
            "path": path,
            "status": status,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(errors="replace"),
        }
        with LOCK, open(sys.argv[2], "a") as log:
            log.write(json.dumps(entry) + "\n")
        self.send_response(status)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_OPTIONS = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
