"""A pub/sub subscriber app for end-to-end tests.

Usage: python subscriber_app.py PORT RECORD_FILE SUBSCRIPTIONS_JSON

- ``GET /dapr/subscribe`` answers SUBSCRIPTIONS_JSON (a JSON array, Dapr's shape).
- Every ``POST`` is recorded as one JSON line in RECORD_FILE: path, the headers that matter
  (content-type, traceparent, tracestate, pubsubname, dapr-api-token), the body (parsed when JSON), and the
  answer given.
- The answer comes from the event itself: when its ``data`` is an object with ``answers``
  (e.g. ``["RETRY", "SUCCESS"]``), the n-th delivery of that event id gets the n-th answer
  (the last one repeats). ``SUCCESS``/``RETRY``/``DROP`` are 200 with ``{"status": ...}``;
  ``HTTP<code>`` answers that status. Without ``answers``: 200 SUCCESS.
- Bulk deliveries (``type`` ``com.dapr.event.sent.bulk``) are recorded one line per entry
  (``body`` is the entry's event, ``bulk`` holds the request id, its entry count and the
  entryId) and answered ``{"statuses": [...]}`` with each entry's answer as above.
- Dead-letter sinks (paths ``/poison`` and ``/dead``) always answer SUCCESS, so a
  dead-lettered event carrying ``answers`` is not failed again.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECORD_LOCK = threading.Lock()
SEEN: Counter[str] = Counter()
SINKS = ("/poison", "/dead")
BULK_TYPE = "com.dapr.event.sent.bulk"


class Subscriber(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    record_file = ""
    subscriptions = b"[]"

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/dapr/subscribe":
            self._send(200, self.subscriptions)
        else:
            self._send(404)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if isinstance(body, dict) and body.get("type") == BULK_TYPE:
            self._bulk(body)
            return
        answer = self._record(body)
        if answer.startswith("HTTP"):
            self._send(int(answer[4:]))
        else:
            self._send(200, json.dumps({"status": answer}).encode())

    def _bulk(self, body: dict[str, Any]) -> None:
        """Bulk delivery: one record line per entry, one status per entry."""
        entries = body.get("entries") or []
        statuses = []
        for entry in entries:
            bulk = {"id": body.get("id"), "size": len(entries), "entryId": entry.get("entryId")}
            answer = self._record(entry.get("event"), bulk)
            statuses.append({"entryId": entry.get("entryId"), "status": answer})
        self._send(200, json.dumps({"statuses": statuses}).encode())

    def _record(self, body: Any, bulk: dict[str, Any] | None = None) -> str:
        answers = ["SUCCESS"]
        event_id = ""
        if isinstance(body, dict) and self.path not in SINKS:
            event_id = str(body.get("id", ""))
            data = body.get("data")
            if isinstance(data, dict) and isinstance(data.get("answers"), list):
                answers = [str(a) for a in data["answers"]] or answers
        with RECORD_LOCK:
            SEEN[event_id] += 1
            answer = answers[min(SEEN[event_id], len(answers)) - 1]
            line = {
                "path": self.path,
                "headers": {
                    k: self.headers.get(k, "")
                    for k in (
                        "content-type",
                        "traceparent",
                        "tracestate",
                        "pubsubname",
                        "dapr-api-token",
                    )
                },
                "body": body,
                "answer": answer,
            }
            if bulk is not None:
                line["bulk"] = bulk
            with open(self.record_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        return answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


if __name__ == "__main__":
    port, record_file, subscriptions = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    json.loads(subscriptions)  # fail fast on a malformed argument
    Subscriber.record_file = record_file
    Subscriber.subscriptions = subscriptions.encode()
    server = ThreadingHTTPServer(("127.0.0.1", port), Subscriber)
    server.daemon_threads = True
    server.serve_forever()
