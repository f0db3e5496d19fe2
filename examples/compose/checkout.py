"""The `checkout` example app: every 5 s it places an order with `orders` through its sidecar."""

import itertools
import json
import os
import time
import urllib.error
import urllib.request

SIDECAR = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3501')}"

for n in itertools.count(1):
    request = urllib.request.Request(
        f"{SIDECAR}/v1.0/invoke/orders/method/orders",
        data=json.dumps({"id": n, "item": "book"}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(f"order {n}: {response.status}", flush=True)
    except (urllib.error.URLError, OSError) as exc:
        print(f"order {n}: {exc}", flush=True)
    time.sleep(5)
