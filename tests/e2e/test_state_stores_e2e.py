"""Issue acceptance, end to end: one program written against the official Dapr SDK
(`tests/apps/sdk_state.py`: save_state with StateOptions, save_bulk_state, get_bulk_state,
execute_state_transaction, delete_state with etags, query_state) runs under `tandem run`
against every state store — the embedded SQLite default, Redis, PostgreSQL v1 and v2 and
the in-memory store, the servers real — and gets the same answers from each. The stores
without the query API (Redis, PostgreSQL v2) give the SDK Dapr's "not supported" error.

The five sidecars start together, once, and each runs the app once; every test reads
their recorded outputs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis
from harness import APPS, Sidecar, start_sidecar

from servers import (  # noqa: F401  (fixture re-exports)
    PostgresServer,
    RedisServer,
    postgres_process,
    postgres_server,
    redis_server,
)

SDK_APP = str(APPS / "sdk_state.py")
QUERY_MARKER = "-- query API"
RUN_DEADLINE_S = 90


@dataclass(frozen=True)
class Store:
    type: str
    query: bool
    component: str | None  # the component YAML's spec, None for the embedded default


STORES = {
    "sqlite": Store("state.sqlite", True, None),
    "redis": Store(
        "state.redis",
        False,
        """\
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{redis}"
  - name: redisPassword
    value: ""
""",
    ),
    "postgresql": Store(
        "state.postgresql",
        True,
        """\
  type: state.postgresql
  version: v1
  metadata:
  - name: connectionString
    value: "{postgres}"
  - name: tableName
    value: sdk_e2e_v1
""",
    ),
    "postgresql-v2": Store(
        "state.postgresql",
        False,
        """\
  type: state.postgresql
  version: v2
  metadata:
  - name: connectionString
    value: "{postgres}"
  - name: tableName
    value: sdk_e2e_v2
""",
    ),
    "in-memory": Store("state.in-memory", True, "  type: state.in-memory\n  version: v1\n"),
}
TABLES = {"postgresql": "sdk_e2e_v1", "postgresql-v2": "sdk_e2e_v2"}


@dataclass(frozen=True)
class AppRun:
    code: int
    output: str

    def checks(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("ok: ")]

    def sections(self) -> tuple[list[str], list[str]]:
        """The ``ok:`` lines before the query marker (the same for every store) and after."""
        lines = [
            line
            for line in self.output.splitlines()
            if line.startswith("ok: ") or line.startswith(QUERY_MARKER)
        ]
        cut = next(i for i, line in enumerate(lines) if line.startswith(QUERY_MARKER))
        return lines[:cut], lines[cut + 1 :]


def app_id(store: str) -> str:
    return f"sdk-{store}"


@pytest.fixture(scope="module")
def sdk_runs(
    tandem_home: Path,
    redis_server: RedisServer,  # noqa: F811
    postgres_server: PostgresServer,  # noqa: F811
) -> dict[str, AppRun]:
    """Start one `tandem run -- python sdk_state.py` per store, all at once; their results."""
    sidecars: dict[str, Sidecar] = {}
    try:
        for name, store in STORES.items():
            extra: tuple[str, ...] = ()
            if store.component is not None:
                resources = tandem_home / f"resources-{name}"
                resources.mkdir()
                spec = store.component.format(
                    redis=redis_server.address, postgres=postgres_server.url
                )
                (resources / "statestore.yaml").write_text(
                    "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
                    f"metadata:\n  name: statestore\nspec:\n{spec}"
                )
                extra = ("--resources-path", str(resources))
            query = "supported" if store.query else "unsupported"
            command = [sys.executable, SDK_APP, "statestore", store.type, "--query", query]
            sidecars[name] = start_sidecar(
                tandem_home, app_id(name), *extra, command=command, wait=False
            )
        runs = {}
        for name, sidecar in sidecars.items():
            try:
                code = sidecar.proc.wait(RUN_DEADLINE_S)
            except subprocess.TimeoutExpired:
                code = sidecar.stop()
            runs[name] = AppRun(code, sidecar.text())
        return runs
    finally:
        for sidecar in sidecars.values():
            sidecar.stop()


@pytest.mark.parametrize("store", list(STORES))
def test_official_sdk_state_program_passes_every_check_under_tandem_run(
    store: str, sdk_runs: dict[str, AppRun]
) -> None:
    run = sdk_runs[store]
    assert run.code == 0, run.output
    assert "all state checks passed" in run.output, run.output
    assert not any(line.startswith("FAIL:") for line in run.output.splitlines()), run.output
    checks = run.checks()
    for expected in (
        "ok: the store has the expected type",
        "ok: save_state with a stale etag and first-write is refused",
        "ok: a refused transaction creates nothing",
        "ok: delete_state with the current etag deletes",
        "ok: save_bulk_state with the current etags saves every item",
        "ok: a refused bulk save keeps the stored value and etag",
        "ok: first-write without an etag on an existing key is refused with ABORTED",
    ):
        assert expected in checks, run.output
    if STORES[store].query:
        assert "ok: query_state IN with two sort keys returns the matches in order" in checks
        assert (
            "ok: query_state pages by limit with the returned token, then ends without one"
            in checks
        )
    else:
        assert "ok: query_state on a store without the query API is refused" in checks
        assert "ok: its reason is DAPR_STATE_QUERYING_NOT_SUPPORTED" in checks


def test_every_store_gives_the_sdk_the_same_answers(sdk_runs: dict[str, AppRun]) -> None:
    """Same program, same results: identical checks everywhere up to the query API, and
    identical query checks among the stores that share the capability."""
    for name, run in sdk_runs.items():
        assert run.code == 0, f"{name}:\n{run.output}"
    sections = {name: run.sections() for name, run in sdk_runs.items()}
    common = {name: before for name, (before, _) in sections.items()}
    assert len({tuple(lines) for lines in common.values()}) == 1, common
    for supported in (True, False):
        query = {
            name: after for name, (_, after) in sections.items() if STORES[name].query is supported
        }
        assert len({tuple(lines) for lines in query.values()}) == 1, query
        assert all(query.values()), query


def test_redis_store_keeps_the_sdk_state_in_the_redis_server(
    sdk_runs: dict[str, AppRun],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    assert sdk_runs["redis"].code == 0, sdk_runs["redis"].output
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        stored = {k.decode() for k in client.scan_iter(match=f"{app_id('redis')}||*")}
    finally:
        client.close()
    # Dapr's key scheme `<app id>||<key>`; the bulk-saved keys and the transaction's are there.
    for prefix in ("b1-", "b2-", "b3-", "t1-", "t2-"):
        assert any(k.startswith(f"{app_id('redis')}||{prefix}") for k in stored), stored


@pytest.mark.parametrize("store", list(TABLES))
def test_postgresql_stores_keep_the_sdk_state_in_their_table(
    store: str,
    sdk_runs: dict[str, AppRun],
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    assert sdk_runs[store].code == 0, sdk_runs[store].output

    async def stored_keys() -> set[str]:
        conn = await asyncpg.connect(postgres_server.url)
        try:
            rows = await conn.fetch(
                f"SELECT key FROM {TABLES[store]} WHERE key LIKE $1", f"{app_id(store)}||%"
            )
        finally:
            await conn.close()
        return {r["key"] for r in rows}

    stored = asyncio.run(stored_keys())
    for prefix in ("b1-", "b3-", "t1-"):
        assert any(k.startswith(f"{app_id(store)}||{prefix}") for k in stored), stored
    # Only the v1 store ran the query checks, whose documents are there too.
    assert any(k.startswith(f"{app_id(store)}||p1-") for k in stored) is STORES[store].query
