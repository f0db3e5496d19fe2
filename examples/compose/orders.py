"""The `orders` example app: POST /orders stores an order through its sidecar's state API."""

import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIDECAR = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}"


class Orders(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def do_POST(self) -> None:
        order = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        body = json.dumps([{"key": str(order.get("id", "0")), "value": order}]).encode()
        request = urllib.request.Request(
            f"{SIDECAR}/v1.0/state/statestore",
            data=body,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            self.send_response(200 if response.status == 204 else 502)
        self.end_headers()


ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("APP_PORT", "8080"))), Orders).serve_forever()
