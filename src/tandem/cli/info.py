"""`tandem status`, `tandem logs`, `tandem version`: what a person asks of the machine's mesh."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tandem import DAPR_API_VERSION, DAPR_SDK_VERSION, RUNTIME_VERSION, __version__
from tandem.cli.home import Home
from tandem.procs import pid_alive
from tandem.xds.ca import ROOT_CERT_FILE, ca_dir
from tandem.xds.record import read_info

LOG_KINDS = ("runtime", "envoy")


def version_info() -> dict[str, str]:
    return {
        "tandem": __version__,
        "runtimeVersion": RUNTIME_VERSION,
        "daprApi": DAPR_API_VERSION,
        "daprSdk": DAPR_SDK_VERSION,
    }


def cmd_version(output: str) -> int:
    info = version_info()
    if output == "json":
        print(json.dumps(info, indent=2))
    else:
        print(f"Tandem version: {info['tandem']}")
        print(f"Dapr API: {info['daprApi']} (HTTP /v1.0…, gRPC dapr.proto.runtime.v1)")
        print(f"Tested with the Dapr SDK: {info['daprSdk']}")
    return 0


def _ca_expiry(home: Home) -> dt.datetime | None:
    from cryptography import x509

    try:
        pem = (ca_dir(home.root) / ROOT_CERT_FILE).read_bytes()
    except OSError:
        return None
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def _uptime(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"{days}d{hours}h{minutes}m" if days else f"{hours}h{minutes}m{s}s"


def status(home: Home, apps: list[dict[str, Any]], links: list[str]) -> dict[str, Any]:
    info = read_info(home.root)
    running = info is not None and pid_alive(info.pid)
    expiry = _ca_expiry(home)
    return {
        "home": str(home.root),
        "controlPlane": {
            "running": running,
            "pid": info.pid if running and info else None,
            "address": info.ads_address if running and info else None,
            "uptimeSeconds": round(time.time() - info.started) if running and info else None,
            "caExpires": expiry.isoformat() if expiry else None,
        },
        "sidecars": [
            {
                "appId": a.get("app_id"),
                "pid": a.get("pid"),
                "httpPort": a.get("http_port"),
                "controlPlane": link,
            }
            for a, link in zip(apps, links, strict=True)
        ],
    }


def cmd_status(home: Home, report: dict[str, Any], output: str) -> int:
    if output == "json":
        print(json.dumps(report, indent=2))
        return 0
    cp = report["controlPlane"]
    if cp["running"]:
        print(
            f"control plane: running, pid {cp['pid']}, {cp['address']}, "
            f"up {_uptime(cp['uptimeSeconds'])}"
        )
    else:
        print("control plane: not running (the next `tandem run` starts it)")
    print(f"mesh CA root expires: {cp['caExpires'] or 'no CA yet'}")
    sidecars = report["sidecars"]
    print(f"sidecars: {len(sidecars)}")
    for s in sidecars:
        print(f"  {s['appId']}  pid {s['pid']}  HTTP {s['httpPort']}  {s['controlPlane']}")
    return 0


def log_path(home: Home, app_id: str, kind: str) -> Path:
    return home.logs_dir / f"{app_id}.{kind}.log"


def cmd_logs(
    home: Home,
    app_id: str,
    kind: str,
    follow: bool,
    write: Callable[[str], Any] = sys.stdout.write,
    keep_going: Callable[[], bool] = lambda: True,
) -> int:
    """Print the app's runtime (or Envoy) log; with ``follow``, keep printing what comes."""
    path = log_path(home, app_id, kind)
    if not path.exists():
        print(f"tandem: no {kind} log for app id {app_id} ({path})", file=sys.stderr)
        return 1
    with path.open("r", errors="replace") as f:
        write(f.read())
        while follow and keep_going():
            line = f.readline()
            if line:
                write(line)
            else:
                sys.stdout.flush()
                time.sleep(0.2)
    return 0
