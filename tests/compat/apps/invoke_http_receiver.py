"""A plain HTTP app in the style of Dapr's invocation quickstart's receiver (written for
Tandem): it answers invocations with what it received.

Usage: python invoke_http_receiver.py PORT

- ``/status/<code>``: answers that HTTP status, body ``status <code> as asked``.
- any other path: 200 ``{"reply": "INVOKE_RECEIVED", "method", "path", "query",
  "content_type", "body", "caller"}``.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            payload = f"status {code} as asked".encode()
            content_type = "text/plain"
        else:
            code = 200
            content_type = "application/json"
            payload = json.dumps(
                {
                    "reply": "INVOKE_RECEIVED",
                    "method": self.command,
                    "path": path,
                    "query": query,
                    "content_type": self.headers.get("content-type"),
                    "body": body.decode("utf-8", "replace"),
                    "caller": self.headers.get("dapr-caller-app-id"),
                }
            ).encode()
        self.send_response(code)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
