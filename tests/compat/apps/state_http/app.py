"""order-processor, state over plain HTTP: the same calls as the SDK sample, as curl or any
HTTP client would make them against the sidecar."""

import json
import os
import urllib.error
import urllib.request

BASE = f"http://localhost:{os.getenv('DAPR_HTTP_PORT', '3500')}/v1.0/state/statestore"


def call(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


for order_id in range(1, 4):
    order = {"orderId": order_id}
    key = f"order_{order_id}"
    status, _, _ = call("POST", BASE, [{"key": key, "value": order}])
    assert status == 204, status
    print("Saving Order:", json.dumps(order), flush=True)
    status, headers, body = call("GET", f"{BASE}/{key}")
    assert status == 200 and json.loads(body) == order, (status, body)
    assert headers.get("ETag"), dict(headers)
    print("Getting Order:", json.dumps(json.loads(body)), flush=True)
    status, _, _ = call("DELETE", f"{BASE}/{key}")
    assert status == 204, status
    status, _, _ = call("GET", f"{BASE}/{key}")
    assert status == 204, status
    print("Deleted Order:", key, flush=True)

status, _, _ = call(
    "POST", BASE, [{"key": "cart_1", "value": "apples"}, {"key": "cart_2", "value": "pears"}]
)
assert status == 204, status
status, _, body = call("POST", f"{BASE}/bulk", {"keys": ["cart_1", "cart_2"], "parallelism": 2})
assert status == 200, status
found = {item["key"]: item["data"] for item in json.loads(body)}
assert found == {"cart_1": "apples", "cart_2": "pears"}, found
print("Bulk get:", json.dumps(found, sort_keys=True), flush=True)

_, headers, _ = call("GET", f"{BASE}/cart_1")
etag = headers["ETag"]
status, _, _ = call("POST", BASE, [{"key": "cart_1", "value": "plums", "etag": etag}])
assert status == 204, status
status, _, body = call("POST", BASE, [{"key": "cart_1", "value": "figs", "etag": etag}])
assert status == 409, (status, body)
print("Stale ETag refused:", json.loads(body)["errorCode"], flush=True)

status, _, body = call(
    "POST",
    f"{BASE}/transaction",
    {
        "operations": [
            {"operation": "upsert", "request": {"key": "cart_3", "value": "kiwis"}},
            {"operation": "delete", "request": {"key": "cart_2"}},
        ]
    },
)
assert status == 204, (status, body)
assert json.loads(call("GET", f"{BASE}/cart_3")[2]) == "kiwis"
assert call("GET", f"{BASE}/cart_2")[0] == 204
print("Transaction committed", flush=True)

print("state http: all checks passed", flush=True)
