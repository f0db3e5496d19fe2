"""Secrets, locks and configuration through a real `tandem run`, one sidecar per HTTP door
(module-scoped, serving one recording app):
- secrets: local.file and local.env stores over HTTP and the SDK's gRPC calls,
  Configuration scopes; a state.redis, a lock.redis and a configuration.redis whose
  password is a secretKeyRef reaching a password-protected redis-server, and an
  HTTPEndpoint whose header is one (no value in any log nor in the metadata API);
- locks: lock.redis and the embedded lock.sqlite over HTTP and the SDK;
- configuration: redis, postgresql (the documented trigger) and the embedded sqlite store:
  get, changes pushed to the app over HTTP until unsubscribed; the SDK's gRPC subscription.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from harness import (
    APPS,
    TRANSPORTS,
    Sidecar,
    distinct_free_ports,
    run_sdk_app,
    sidecar_per_door,
    wait_until,
)

from servers import PostgresServer, postgres_process, postgres_server, run_redis_process  # noqa: F401

PASSWORD = "pw-7c1f0e2d-never-logged"
API_KEY = "key-e2e-9d1c-never-logged"
ENV_VALUE = "env-4b9a-value"

RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: localsecretstore}}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - {{name: secretsFile, value: "{file}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: envsecrets}}
spec:
  type: secretstores.local.env
  version: v1
  metadata:
  - {{name: prefix, value: TANDEM_E2E_}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: protected}}
spec:
  type: state.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{redis}"}}
  - name: redisPassword
    secretKeyRef: {{name: "redis:password", key: "redis:password"}}
auth:
  secretStore: localsecretstore
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: redislock}}
spec:
  type: lock.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{redis}"}}
  - name: redisPassword
    secretKeyRef: {{name: "redis:password", key: "redis:password"}}
auth:
  secretStore: localsecretstore
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: lockstore}}
spec:
  type: lock.sqlite
  version: v1
  metadata:
  - {{name: connectionString, value: "{lockdb}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: redisconfig}}
spec:
  type: configuration.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{redis}"}}
  - name: redisPassword
    secretKeyRef: {{name: "redis:password", key: "redis:password"}}
auth:
  secretStore: localsecretstore
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: configstore}}
spec:
  type: configuration.sqlite
  version: v1
  metadata:
  - {{name: connectionString, value: "{configdb}"}}
  - {{name: pollInterval, value: "0.1"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pgconfig}}
spec:
  type: configuration.postgresql
  version: v1
  metadata:
  - {{name: connectionString, value: "{postgres}"}}
  - {{name: table, value: e2e_config}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: keyed}}
spec:
  baseUrl: http://127.0.0.1:{app_port}
  headers:
  - name: X-Api-Key
    secretKeyRef: {{name: api-key, key: api-key}}
auth:
  secretStore: localsecretstore
"""
CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: scoped}
spec:
  secrets:
    scopes:
    - storeName: localsecretstore
      defaultAccess: allow
      deniedSecrets: [forbidden]
"""


@dataclass
class Setup:
    sidecars: dict[str, Sidecar]
    redis: Any  # servers.RedisServer, password-protected
    app_ports: dict[str, int]
    config_db: Path
    postgres: str


@pytest.fixture(scope="module")
def setup(
    tandem_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,  # noqa: F811
) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("secrets")
    asyncio.run(_create_config_table(postgres_server.url))
    with run_redis_process(work / "redis") as server:
        redis.Redis(port=server.port).config_set("requirepass", PASSWORD)
        (work / "secrets.json").write_text(
            json.dumps(
                {
                    "redis": {"password": PASSWORD},
                    "db-password": "file-value",
                    "forbidden": "hidden",
                    "api-key": API_KEY,
                }
            )
        )
        app_ports = dict(zip(TRANSPORTS, distinct_free_ports(len(TRANSPORTS)), strict=True))
        folder = work / "res"
        folder.mkdir()
        address = f"127.0.0.1:{server.port}"
        (folder / "components.yaml").write_text(
            RESOURCES.format(
                file=work / "secrets.json",
                redis=address,
                lockdb=work / "lock.db",
                configdb=work / "config.db",
                app_port=app_ports["http"],
                postgres=postgres_server.url,
            )
        )
        config = work / "config.yaml"
        config.write_text(CONFIG)
        app = subprocess.Popen(
            [sys.executable, str(APPS / "config_app.py"), *map(str, app_ports.values())]
        )
        try:
            with sidecar_per_door(
                tandem_home,
                "secrets",
                "--resources-path",
                str(folder),
                "--config",
                str(config),
                per_door=lambda transport: ("--app-port", str(app_ports[transport])),
                env={"TANDEM_E2E_TOKEN": ENV_VALUE},
            ) as started:
                yield Setup(started, server, app_ports, work / "config.db", postgres_server.url)
        finally:
            app.terminate()
            app.wait(10)


@pytest.fixture(scope="module")
def sidecars(setup: Setup) -> dict[str, Sidecar]:
    return setup.sidecars


@pytest.fixture(params=TRANSPORTS)
def sidecar(sidecars: dict[str, Sidecar], request: pytest.FixtureRequest) -> Sidecar:
    return sidecars[request.param]


def get(sidecar: Sidecar, path: str) -> httpx.Response:
    return httpx.get(f"{sidecar.base}{path}", timeout=30)


def test_a_secret_is_read_from_the_file_and_env_stores(sidecar: Sidecar) -> None:
    reply = get(sidecar, "/v1.0/secrets/localsecretstore/db-password")
    assert (reply.status_code, reply.json()) == (200, {"db-password": "file-value"})

    reply = get(sidecar, "/v1.0/secrets/localsecretstore/redis:password")
    assert reply.json() == {"redis:password": PASSWORD}

    reply = get(sidecar, "/v1.0/secrets/envsecrets/TOKEN")
    assert (reply.status_code, reply.json()) == (200, {"TOKEN": ENV_VALUE})


def test_bulk_leaves_out_what_the_scopes_deny(sidecar: Sidecar) -> None:
    reply = get(sidecar, "/v1.0/secrets/localsecretstore/bulk")

    assert reply.status_code == 200
    assert reply.json() == {
        "db-password": {"db-password": "file-value"},
        "redis:password": {"redis:password": PASSWORD},
        "api-key": {"api-key": API_KEY},
    }


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1.0/secrets/localsecretstore/forbidden", 403, "ERR_PERMISSION_DENIED"),
        ("/v1.0/secrets/nostore/db-password", 401, "ERR_SECRET_STORE_NOT_FOUND"),
        ("/v1.0/secrets/localsecretstore/absent", 500, "ERR_SECRET_GET"),
        ("/v1.0/secrets/envsecrets/NOT_SET_ANYWHERE", 500, "ERR_SECRET_GET"),
    ],
)
def test_bad_requests_get_daprs_errors_and_the_sidecar_keeps_serving(
    sidecar: Sidecar, path: str, status: int, code: str
) -> None:
    reply = get(sidecar, path)

    assert reply.status_code == status
    assert reply.json()["errorCode"] == code
    assert get(sidecar, "/v1.0/healthz").status_code == 204


def test_a_state_store_whose_password_is_a_secret_reference_connects(sidecar: Sidecar) -> None:
    key = f"k-{sidecar.app_id}"
    saved = httpx.post(
        f"{sidecar.base}/v1.0/state/protected", json=[{"key": key, "value": "v"}], timeout=30
    )
    assert saved.status_code == 204, saved.text
    assert get(sidecar, f"/v1.0/state/protected/{key}").json() == "v"


def test_the_password_is_in_no_log_and_not_in_the_metadata(sidecar: Sidecar) -> None:
    metadata = get(sidecar, "/v1.0/metadata")
    components = {c["name"]: c["type"] for c in metadata.json()["components"]}

    assert components["localsecretstore"] == "secretstores.local.file"
    assert components["envsecrets"] == "secretstores.local.env"
    assert PASSWORD not in metadata.text
    logs = [sidecar.output, *sorted((sidecar.home / "logs").glob("*"))]
    for log in logs:
        if log.is_file():
            text = log.read_text(errors="replace")
            assert PASSWORD not in text, log
            assert API_KEY not in text, log


def test_the_sdk_reads_secrets_over_grpc(sidecars: dict[str, Sidecar]) -> None:
    done = run_sdk_app(sidecars["http"], APPS / "sdk_secrets.py", "localsecretstore", timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    assert lines[0] == {"get": {"db-password": "file-value"}}
    assert lines[1] == {"bulk": ["api-key", "db-password", "redis:password"]}
    assert "access denied by policy" in lines[2]["denied"]


LOCK_STORES = ("redislock", "lockstore")


@pytest.mark.parametrize("store", LOCK_STORES)
def test_a_lock_is_held_by_one_owner_until_released(sidecar: Sidecar, store: str) -> None:
    resource = f"order-{sidecar.app_id}-{store}"

    def post(path: str, body: dict) -> httpx.Response:
        return httpx.post(f"{sidecar.base}{path}/{store}", json=body, timeout=30)

    take = {"resourceId": resource, "lockOwner": "a", "expiryInSeconds": 60}
    assert post("/v1.0-alpha1/lock", take).json() == {"success": True}
    assert post("/v1.0-alpha1/lock", {**take, "lockOwner": "b"}).json() == {"success": False}
    release = {"resourceId": resource, "lockOwner": "b"}
    assert post("/v1.0-alpha1/unlock", release).json() == {"status": 2}
    assert post("/v1.0-alpha1/unlock", {**release, "lockOwner": "a"}).json() == {"status": 0}
    assert post("/v1.0-alpha1/unlock", {**release, "lockOwner": "a"}).json() == {"status": 1}


@pytest.mark.parametrize(
    ("store", "body", "status", "code"),
    [
        ("nostore", {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5}, 400,
         "ERR_LOCK_STORE_NOT_FOUND"),
        ("lockstore", {"resourceId": "r", "lockOwner": "", "expiryInSeconds": 5}, 400,
         "ERR_MALFORMED_REQUEST"),
        ("lockstore", {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 0}, 400,
         "ERR_MALFORMED_REQUEST"),
    ],
)  # fmt: skip
def test_bad_lock_requests_get_daprs_errors(
    sidecar: Sidecar, store: str, body: dict, status: int, code: str
) -> None:
    reply = httpx.post(f"{sidecar.base}/v1.0-alpha1/lock/{store}", json=body, timeout=30)

    assert (reply.status_code, reply.json()["errorCode"]) == (status, code)
    assert get(sidecar, "/v1.0/healthz").status_code == 204


@pytest.mark.parametrize("store", LOCK_STORES)
def test_the_sdk_takes_and_releases_locks(sidecars: dict[str, Sidecar], store: str) -> None:
    done = run_sdk_app(sidecars["ext_proc"], APPS / "sdk_lock.py", store, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(json.loads(x) for x in done.stdout.splitlines() if x.startswith("{"))

    assert line == {
        "first": True,
        "second": False,
        "wrong": "lock_belongs_to_others",
        "right": "success",
        "gone": "lock_does_not_exist",
    }


def received(setup: Setup, transport: str) -> list[dict]:
    port = setup.app_ports[transport]
    return list(httpx.get(f"http://127.0.0.1:{port}/_received", timeout=10).json())


# The trigger Dapr documents for configuration.postgresql, notifying channel e2e_config.
PG_TABLE = """
CREATE TABLE IF NOT EXISTS e2e_config (
  key VARCHAR NOT NULL, value VARCHAR NOT NULL, version VARCHAR NOT NULL, metadata JSON
);
CREATE OR REPLACE FUNCTION e2e_config_event() RETURNS TRIGGER AS $$
DECLARE data json; notification json;
BEGIN
  IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
  notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
  PERFORM pg_notify('e2e_config', notification::text);
  RETURN NULL;
END; $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS e2e_config_trigger ON e2e_config;
CREATE TRIGGER e2e_config_trigger AFTER INSERT OR UPDATE OR DELETE ON e2e_config
  FOR EACH ROW EXECUTE PROCEDURE e2e_config_event();
"""


async def _create_config_table(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(PG_TABLE)
    finally:
        await conn.close()


async def _pg_write(url: str, key: str, value: str, version: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM e2e_config WHERE key = $1", key)
            await conn.execute(
                "INSERT INTO e2e_config (key, value, version) VALUES ($1, $2, $3)",
                key,
                value,
                version,
            )
    finally:
        await conn.close()


def write_config(setup: Setup, store: str, key: str, value: str, version: str) -> None:
    if store == "pgconfig":
        asyncio.run(_pg_write(setup.postgres, key, value, version))
    elif store == "redisconfig":
        client = redis.Redis(port=setup.redis.port, password=PASSWORD)
        client.set(key, f"{value}||{version}")
    else:
        with sqlite3.connect(setup.config_db) as db:
            db.execute(
                "INSERT OR REPLACE INTO configuration (key, value, version) VALUES (?, ?, ?)",
                (key, value, version),
            )


CONFIG_STORES = ("redisconfig", "pgconfig", "configstore")
# configuration.postgresql subscriptions name the trigger's channel.
SUBSCRIBE_METADATA = {"pgconfig": {"metadata.pgNotifyChannel": "e2e_config"}}


@pytest.mark.parametrize("store", CONFIG_STORES)
def test_configuration_get_and_changes_pushed_to_the_app_until_unsubscribed(
    setup: Setup, transport: str, store: str
) -> None:
    sidecar = setup.sidecars[transport]
    key = f"{store}-{transport}-flag"
    base = f"{sidecar.base}/v1.0/configuration/{store}"
    assert get(sidecar, f"/v1.0/configuration/{store}?key={key}").status_code == 204  # creates
    write_config(setup, store, key, "on", "1")

    reply = httpx.get(base, params={"key": key}, timeout=30)
    assert reply.status_code == 200
    assert reply.json() == {key: {"value": "on", "version": "1", "metadata": {}}}

    params = {"key": key, **SUBSCRIBE_METADATA.get(store, {})}
    sub = httpx.get(f"{base}/subscribe", params=params, timeout=30)
    assert sub.status_code == 200, sub.text
    sub_id = sub.json()["id"]
    write_config(setup, store, key, "off", "2")

    def pushed(value: str, sid: str) -> list[dict]:
        return [
            r
            for r in received(setup, transport)
            if r["path"] == f"/configuration/{store}/{key}"
            and r["body"]["id"] == sid
            and r["body"]["items"][key]["value"] == value
        ]

    wait_until(lambda: pushed("off", sub_id), 20, "the update pushed to the app")
    assert pushed("off", sub_id)[0]["body"]["items"][key]["version"] == "2"

    done = httpx.get(f"{base}/{sub_id}/unsubscribe", timeout=30)
    assert (done.status_code, done.json()) == (200, {"ok": True})
    again = httpx.get(f"{base}/{sub_id}/unsubscribe", timeout=30)
    assert (again.status_code, again.json()["ok"]) == (500, False)
    # A second subscription sees the next change; the ended one never does.
    second = httpx.get(f"{base}/subscribe", params=params, timeout=30).json()["id"]
    write_config(setup, store, key, "third", "3")
    wait_until(lambda: pushed("third", second), 20, "the update to the second subscription")
    assert not pushed("third", sub_id)
    httpx.get(f"{base}/{second}/unsubscribe", timeout=30)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1.0/configuration/nostore?key=a", 400, "ERR_CONFIGURATION_STORE_NOT_FOUND"),
        ("/v1.0-alpha1/configuration/nostore/subscribe", 400, "ERR_CONFIGURATION_STORE_NOT_FOUND"),
    ],
)
def test_bad_configuration_requests_get_daprs_errors(
    sidecar: Sidecar, path: str, status: int, code: str
) -> None:
    reply = get(sidecar, path)
    assert (reply.status_code, reply.json()["errorCode"]) == (status, code)


def test_the_sdk_gets_and_subscribes_to_configuration(setup: Setup) -> None:
    argv = ["redisconfig", "sdk-key", "127.0.0.1", str(setup.redis.port), PASSWORD]
    done = run_sdk_app(setup.sidecars["ext_proc"], APPS / "sdk_configuration.py", *argv)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]

    assert lines[0] == {"get": ["before", "1"]}
    assert lines[1] == {"subscribed": True}
    assert lines[2]["update_seen"] is True, lines[2]
    assert {"key": "sdk-key", "value": "after", "version": "2"}.items() <= lines[2]["updates"][
        -1
    ].items()
    assert lines[3] == {"unsubscribed": True}


def test_an_http_endpoint_header_from_a_secret_is_sent(sidecar: Sidecar) -> None:
    reply = get(sidecar, "/v1.0/invoke/keyed/method/echo-headers")

    assert reply.status_code == 200, reply.text
    assert reply.json()["x-api-key"] == API_KEY
