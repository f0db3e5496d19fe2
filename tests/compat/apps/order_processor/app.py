"""order-processor: a FastAPI app subscribing with the SDK's DaprApp (programmatic, topic
"orders") and through a declarative Subscription (topic "shipments" on /shipments). Prints one
JSON line per event with the CloudEvent fields it got."""

import json
import os

import uvicorn
from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI, Request

app = FastAPI()
dapr_app = DaprApp(app)


async def report(route: str, request: Request) -> dict:
    event = await request.json()
    seen = {
        k: event.get(k)
        for k in (
            "id",
            "source",
            "type",
            "specversion",
            "topic",
            "pubsubname",
            "datacontenttype",
            "data",
        )
    }
    seen["route"] = route
    seen["contentType"] = request.headers.get("content-type")
    print("Subscriber received:", json.dumps(seen, sort_keys=True), flush=True)
    return {"status": "SUCCESS"}


@dapr_app.subscribe(pubsub="pubsub", topic="orders")
async def orders(request: Request) -> dict:
    return await report("orders", request)


@app.post("/shipments")
async def shipments(request: Request) -> dict:
    return await report("shipments", request)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.getenv("APP_PORT", "6002")), log_level="warning")
