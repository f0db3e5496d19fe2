"""A checkout-style caller (written for Tandem, in the shape of Dapr's HTTP invocation
quickstart): plain HTTP to its sidecar with the ``dapr-app-id`` header, no SDK.

Usage: python invoke_checkout_http.py TARGET_APP_ID COUNT
Prints ``Order passed: <json>`` per order, then ``checkout done``; exits 1 if the target
never answered.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = f"http://localhost:{os.environ['DAPR_HTTP_PORT']}"


def post(target: str, order: dict[str, int]) -> bytes:
    request = urllib.request.Request(
        f"{BASE}/orders",
        data=json.dumps(order).encode(),
        headers={"dapr-app-id": target, "content-type": "application/json"},
        method="POST",
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.read()
        except (urllib.error.URLError, OSError):
            # The target may not be known to this sidecar yet, as right after `dapr run`.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    target, count = sys.argv[1], int(sys.argv[2])
    for order_id in range(1, count + 1):
        answer = post(target, {"orderId": order_id})
        print(f"Order passed: {answer.decode()}", flush=True)
    print("checkout done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
