"""What the dashboard shows, gathered from this machine: the app records `tandem run`
writes, each sidecar's own API (health, metadata, metrics) and each app's YAML.

Pure summaries (``policy_summary``, ``request_count``) are kept apart from the I/O so they
are tested on their own. A policy summary never carries a header value or a component's
metadata: what the dashboard shows is safe to show.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tandem.cli.records import config_version

POLICY_KINDS = ("Resiliency", "HTTPRoute", "BackendTrafficPolicy", "HTTPEndpoint")
API_TOKEN_ENV = "DAPR_API_TOKEN"
_REQUEST_FAMILIES = ("dapr_http_server_request_count", "dapr_grpc_io_server_completed_rpcs")


def request_count(metrics_text: str, app_id: str) -> float:
    """Requests the sidecar's API served (HTTP and gRPC), from its /metrics text."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(_REQUEST_FAMILIES) and f'app_id="{app_id}"' in line:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return total


def _names(refs: Any) -> list[str]:
    return [str(r.get("name", "")) for r in refs or [] if isinstance(r, dict)]


def policy_summary(doc: Mapping[str, Any], file: str) -> dict[str, Any] | None:
    """One traffic or resiliency document, summarised for display (no secret values)."""
    kind = doc.get("kind")
    if kind not in POLICY_KINDS:
        return None
    spec = doc.get("spec") or {}
    name = (doc.get("metadata") or {}).get("name", "")
    out: dict[str, Any] = {"kind": kind, "name": name, "file": file}
    if kind == "Resiliency":
        targets = spec.get("targets") or {}
        out["targets"] = {
            group: sorted((targets.get(group) or {}).keys())
            for group in ("apps", "components", "actors")
            if targets.get(group)
        }
    elif kind == "HTTPRoute":
        out["targets"] = _names(spec.get("parentRefs"))
        out["backends"] = [
            {"name": b.get("name", ""), "weight": b.get("weight", 1)}
            for rule in spec.get("rules") or []
            for b in (rule.get("backendRefs") or [])
            if isinstance(b, dict)
        ]
    elif kind == "BackendTrafficPolicy":
        out["targets"] = _names(spec.get("targetRefs"))
        out["features"] = sorted(k for k in spec if k not in ("targetRef", "targetRefs"))
    else:  # HTTPEndpoint: where it goes, not its headers (they may hold secrets)
        out["targets"] = [str(spec.get("baseUrl", ""))]
    return out


def policies(paths: Iterable[str]) -> list[dict[str, Any]]:
    found = []
    for folder in paths:
        p = Path(folder)
        files = sorted(p.glob("*.y*ml")) if p.is_dir() else [p]
        for file in files:
            try:
                docs = list(yaml.safe_load_all(file.read_text()))
            except (OSError, yaml.YAMLError):
                continue
            for doc in docs:
                if isinstance(doc, dict) and (summary := policy_summary(doc, str(file))):
                    found.append(summary)
    return found


def access_control(config: str | None) -> dict[str, Any] | None:
    """The app's Configuration ``spec.accessControl``: who may call it, and how."""
    if not config:
        return None
    try:
        for doc in yaml.safe_load_all(Path(config).read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Configuration":
                acl = (doc.get("spec") or {}).get("accessControl")
                return acl if isinstance(acl, dict) else None
    except (OSError, yaml.YAMLError):
        return None
    return None


class Sidecars:
    """Talks to the sidecars' own APIs on 127.0.0.1 (with DAPR_API_TOKEN when set)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        token = os.environ.get(API_TOKEN_ENV)
        self._headers = {"dapr-api-token": token} if token else {}

    async def request(
        self, app: Mapping[str, Any], method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{app['http_port']}{path}"
        try:
            async with self._session.request(method, url, json=body, headers=self._headers) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text) if text else None
                except ValueError:
                    return resp.status, text
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return 0, str(exc)

    async def metrics(self, app: Mapping[str, Any]) -> str:
        port = app.get("metrics_port")
        if not port:
            return ""
        try:
            async with self._session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                return await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return ""

    async def app_view(self, app: Mapping[str, Any]) -> dict[str, Any]:
        app_id = str(app.get("app_id"))
        (health, _), (status, meta), metrics = await asyncio.gather(
            self.request(app, "GET", "/v1.0/healthz"),
            self.request(app, "GET", "/v1.0/metadata"),
            self.metrics(app),
        )
        meta = meta if status == 200 and isinstance(meta, dict) else {}
        return {
            "appId": app_id,
            "pid": app.get("pid"),
            "ports": {
                "http": app.get("http_port"),
                "grpc": app.get("grpc_port"),
                "app": app.get("app_port"),
                "metrics": app.get("metrics_port"),
            },
            "configVersion": config_version(app.get("run_dir")),
            "healthy": health == 204,
            "components": [
                {"name": c.get("name"), "type": c.get("type"), "version": c.get("version")}
                for c in meta.get("components", [])
            ],
            "subscriptions": [
                {
                    "pubsub": s.get("pubsubname"),
                    "topic": s.get("topic"),
                    "type": s.get("type"),
                    "routes": [r.get("path") for r in s.get("rules", [])],
                }
                for s in meta.get("subscriptions", [])
            ],
            "actors": meta.get("actors", []),
            "requests": request_count(metrics, app_id),
            "accessControl": access_control(app.get("config")),
            "policies": policies(app.get("resources_paths") or []),
        }
