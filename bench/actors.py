"""Actors: calls/s and latency of local and remote actor calls, activations/s and reminders
fired/s, each beside a baseline measured in the same run (a plain state GET and a plain
invocation through the same sidecars).

    python bench/actors.py [--seconds 5] [--reminders 300]

Sidecars: ``host`` (its app hosts actor type ``B``, answering every actor callback at once
from a raw asyncio server, so the figures are the sidecar's, not an app framework's),
``caller`` (no app: its calls to ``B`` go to ``host`` through both Envoys) and ``fast``
(the plain-invocation target). wrk drives the HTTP API.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import TandemMachine, WrkResult, start_fast_app, wait_http, wrk

from tandem.cli.ports import free_port

ACTOR_APP = r"""
import asyncio, json, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
CONFIG = json.dumps({"entities": ["B"], "actorIdleTimeout": "1h"}).encode()
reminders = 0
def reply(body, ctype=b"application/json"):
    return (b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        global reminders
        self.buf += d
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0: return
            head = self.buf[:i]; n = 0
            for line in head.lower().split(b"\r\n"):
                if line.startswith(b"content-length:"): n = int(line.split(b":")[1])
            if len(self.buf) < i + 4 + n: return
            self.buf = self.buf[i + 4 + n:]
            path = head.split(b" ", 2)[1]
            if path == b"/dapr/config":
                self.t.write(reply(CONFIG))
            elif path == b"/count":
                self.t.write(reply(str(reminders).encode()))
            else:
                if b"/method/remind/" in path:
                    reminders += 1
                self.t.write(reply(b'"ok"'))
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await srv.serve_forever()
asyncio.run(main())
"""

SAME_ACTOR = 'wrk.method = "PUT"\nwrk.body = "{}"\n'
# Every request to another of 10,000 actors (spreads turns; all activated after warm-up).
MANY_ACTORS = (
    'wrk.method = "PUT"\nwrk.body = "{}"\ncounter = 0\n'
    "request = function()\n  counter = counter + 1\n"
    '  return wrk.format(nil, "/v1.0/actors/B/a-" .. (counter % 10000) .. "/method/m")\nend\n'
)
# Every request to a fresh actor: an activation each time.
FRESH_ACTORS = (
    'wrk.method = "PUT"\nwrk.body = "{}"\ncounter = 0\n'
    "request = function()\n  counter = counter + 1\n"
    '  return wrk.format(nil, "/v1.0/actors/B/fresh-" .. PREFIX .. "-" .. counter .. "/method/m")\nend\n'
)


def script(text: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(text)
    return f.name


def row(r: WrkResult, base: WrkResult) -> str:
    return (
        f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | "
        f"{r.rps / base.rps:.2f}x of {base.name} | {r.p50_ms - base.p50_ms:+.3f} |"
    )


def baseline(r: WrkResult) -> str:
    return f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | baseline | |"


def http(method: str, url: str, body: object | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--reminders", type=int, default=300)
    a = ap.parse_args()
    app_port = free_port()
    app = subprocess.Popen([sys.executable, "-c", ACTOR_APP, str(app_port)])
    fast, fast_port = start_fast_app()  # the plain-invocation target hosts no actors
    try:
        wait_http(f"http://127.0.0.1:{app_port}/count", 200)
        with TandemMachine() as m:
            host = m.run("host", "--app-port", str(app_port))
            m.run("fast", "--app-port", str(fast_port))
            caller = m.run("caller")
            base_h = f"http://127.0.0.1:{host}"
            base_c = f"http://127.0.0.1:{caller}"
            http("POST", f"{base_h}/v1.0/state/statestore", [{"key": "k", "value": 1}])
            # Placement settles and actors warm up before measuring.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    http("PUT", f"{base_c}/v1.0/actors/B/warm/method/m", {})
                    break
                except Exception:
                    time.sleep(0.2)
            # Reminders: N one-shot reminders due now; time until the app has seen them all.
            before = int(http("GET", f"http://127.0.0.1:{app_port}/count"))
            t0 = time.monotonic()
            for i in range(a.reminders):
                http("PUT", f"{base_h}/v1.0/actors/B/r-{i}/reminders/once", {"dueTime": "0s"})
            registered = time.monotonic() - t0
            while int(http("GET", f"http://127.0.0.1:{app_port}/count")) - before < a.reminders:
                if time.monotonic() - t0 > 120:
                    sys.exit("bench: reminders did not all fire within 120 s")
                time.sleep(0.01)
            fired = time.monotonic() - t0
            s = a.seconds
            same, many = script(SAME_ACTOR), script(MANY_ACTORS)
            wrk("warm-up", f"{base_h}/v1.0/actors/B/x/method/m", seconds=2, script=many)
            wrk("warm-up", f"{base_c}/v1.0/actors/B/x/method/m", seconds=2, script=many)
            rows = []
            for c in (1, 16):
                state = wrk(
                    f"state GET (c={c})",
                    f"{base_h}/v1.0/state/statestore/k",
                    seconds=s,
                    connections=c,
                )
                invoke = wrk(
                    f"invoke (c={c})",
                    f"{base_c}/v1.0/invoke/fast/method/x",
                    seconds=s,
                    connections=c,
                )
                one = wrk(
                    f"local actor, one id (c={c})",
                    f"{base_h}/v1.0/actors/B/one/method/m",
                    seconds=s,
                    connections=c,
                    script=same,
                )
                local = wrk(
                    f"local actors, 10k ids (c={c})",
                    f"{base_h}/v1.0/actors/B/x/method/m",
                    seconds=s,
                    connections=c,
                    script=many,
                )
                remote = wrk(
                    f"remote actors, 10k ids (c={c})",
                    f"{base_c}/v1.0/actors/B/x/method/m",
                    seconds=s,
                    connections=c,
                    script=many,
                )
                fresh = wrk(
                    f"activations (c={c})",
                    f"{base_h}/v1.0/actors/B/x/method/m",
                    seconds=s,
                    connections=c,
                    script=script(f'PREFIX = "{c}"\n' + FRESH_ACTORS),
                )
                rows += [baseline(state), baseline(invoke)]
                rows += [row(one, state), row(local, state), row(fresh, state), row(remote, invoke)]
        print("| path | req/s | p50 ms | p99 ms | vs baseline | added p50 ms |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(r)
        print(
            f"\nreminders: {a.reminders} registered in {registered:.2f} s "
            f"({a.reminders / registered:,.0f}/s), all fired {fired:.2f} s after the first "
            f"registration ({a.reminders / fired:,.0f} fired/s end to end)"
        )
    finally:
        for p in (app, fast):
            p.terminate()
        for f in Path(tempfile.gettempdir()).glob("tmp*.lua"):
            f.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
