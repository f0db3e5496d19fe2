"""checkout: publishes orders to the "orders" topic with the SDK and over plain HTTP, one
order as the app's own CloudEvent, and shipments to the declaratively subscribed topic."""

import json
import os
import urllib.request

from dapr.clients import DaprClient

PUBSUB = "pubsub"
HTTP = f"http://localhost:{os.getenv('DAPR_HTTP_PORT', '3500')}/v1.0/publish/{PUBSUB}"


def http_publish(topic, body, content_type="application/json"):
    req = urllib.request.Request(f"{HTTP}/{topic}", data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204, resp.status


with DaprClient() as client:
    for order_id in range(1, 4):
        order = {"orderId": order_id}
        client.publish_event(
            pubsub_name=PUBSUB,
            topic_name="orders",
            data=json.dumps(order),
            data_content_type="application/json",
        )
        print("Published data:", json.dumps(order), flush=True)
    for shipment_id in range(1, 3):
        client.publish_event(
            pubsub_name=PUBSUB,
            topic_name="shipments",
            data=json.dumps({"shipmentId": shipment_id}),
            data_content_type="application/json",
        )
        print("Published shipment:", shipment_id, flush=True)

for order_id in range(4, 6):
    http_publish("orders", {"orderId": order_id})
    print("Published data over HTTP:", order_id, flush=True)

http_publish(
    "orders",
    {
        "specversion": "1.0",
        "id": "checkout-ce-6",
        "source": "checkout-service",
        "type": "com.example.order.created",
        "datacontenttype": "application/json",
        "data": {"orderId": 6},
    },
    content_type="application/cloudevents+json",
)
print("Published own CloudEvent: 6", flush=True)
