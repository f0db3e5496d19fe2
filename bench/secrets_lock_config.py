"""Secrets, lock and configuration API calls over HTTP vs the empty answer.

    python bench/secrets_lock_config.py [--seconds 5]

One `tandem run` (the HTTP/1.1 front door) with a `secretstores.local.file`, the embedded
`lock.sqlite` and `configuration.sqlite`. wrk, one connection, measures
`GET /v1.0/healthz` (the runtime's answer that does no work: the baseline), a secret GET,
a configuration GET of one key and a lock request (the same owner asking again: one SQLite
write transaction each). Prints the table and each row's p50 over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import urllib.request

from _common import (
    TandemMachine,
    WrkResult,
    post_script,
    resources_folder,
    wait_http,
    work_folder,
    wrk,
)

RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: secrets}}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - {{name: secretsFile, value: "{file}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: locks}}
spec:
  type: lock.sqlite
  version: v1
  metadata:
  - {{name: connectionString, value: "{lockdb}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: config}}
spec:
  type: configuration.sqlite
  version: v1
  metadata:
  - {{name: connectionString, value: "{configdb}"}}
"""
LOCK_BODY = '{"resourceId":"r","lockOwner":"bench","expiryInSeconds":600}'


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with work_folder("tbs") as work, TandemMachine() as m:
        (work / "secrets.json").write_text(json.dumps({"db": {"password": "x" * 24}}))
        res = resources_folder(
            work,
            c=RESOURCES.format(
                file=work / "secrets.json", lockdb=work / "lock.db", configdb=work / "config.db"
            ),
        )
        script = post_script(work / "lock.lua", LOCK_BODY)
        port = m.run("bench", "--resources-path", str(res))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/v1.0/configuration/config?key=k", 204)  # creates the table
        with sqlite3.connect(work / "config.db") as db:
            db.execute("INSERT INTO configuration (key, value, version) VALUES ('k', 'on', '1')")
        urllib.request.urlopen(
            urllib.request.Request(
                f"{base}/v1.0-alpha1/lock/locks", data=LOCK_BODY.encode(),
                headers={"content-type": "application/json"}, method="POST",
            ),
            timeout=10,
        ).close()  # fmt: skip
        rows: list[WrkResult] = [
            wrk("healthz (baseline)", f"{base}/v1.0/healthz", seconds=args.seconds),
            wrk("secret GET", f"{base}/v1.0/secrets/secrets/db:password", seconds=args.seconds),
            wrk("configuration GET", f"{base}/v1.0/configuration/config?key=k",
                seconds=args.seconds),
            wrk("lock (held, same owner)", f"{base}/v1.0-alpha1/lock/locks",
                seconds=args.seconds, script=script),
        ]  # fmt: skip
    print("| request | req/s | p50 ms | p90 ms | p99 ms | p50 / healthz |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"{r.row()} {r.p50_ms / rows[0].p50_ms:.2f}× |")


if __name__ == "__main__":
    main()
