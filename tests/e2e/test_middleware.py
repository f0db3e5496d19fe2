"""Dapr HTTP middleware compiled into Envoy (issue 12), with real sidecars.

``guarded``'s httpPipeline: bearer (issuer served by this test, no jwksURL: the control
plane finds the JWKS through the issuer's OpenID configuration), routeralias and
routerchecker. ``callee``'s appHttpPipeline: uppercase and a 5-per-second rate limit, in
front of an echo app. Tokens are signed with PyJWT; the JWKS is published from the same
RSA key with PyJWT's JWK support.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from harness import APPS, start_sidecar, wait_until
from jwt.algorithms import RSAAlgorithm

from tandem.cli.ports import free_port

AUDIENCE = "tandem-tests"

COMPONENTS = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: auth}}
spec:
  type: middleware.http.bearer
  version: v1
  metadata:
  - {{name: issuer, value: "{issuer}"}}
  - {{name: audience, value: "{audience}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: alias}}
spec:
  type: middleware.http.routeralias
  version: v1
  metadata:
  - name: routes
    value: '{{"/hello": "/v1.0/invoke/callee/method/aliased"}}'
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: checker}}
spec:
  type: middleware.http.routerchecker
  version: v1
  metadata: [{{name: rule, value: "^[A-Za-z0-9/._-]+$"}}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: upper}}
spec: {{type: middleware.http.uppercase, version: v1}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: limit}}
spec:
  type: middleware.http.ratelimit
  version: v1
  metadata: [{{name: maxRequestsPerSecond, value: 5}}]
"""

GUARDED_CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: guarded}
spec:
  httpPipeline:
    handlers:
    - {name: auth, type: middleware.http.bearer}
    - {name: alias, type: middleware.http.routeralias}
    - {name: checker, type: middleware.http.routerchecker}
"""

CALLEE_CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: callee}
spec:
  appHttpPipeline:
    handlers:
    - {name: upper, type: middleware.http.uppercase}
    - {name: limit, type: middleware.http.ratelimit}
"""


class Issuer:
    """An OpenID issuer: its configuration and JWKS over HTTP, and tokens it signs."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        documents = {
            "/.well-known/openid-configuration": {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/keys",
            },
            "/keys": {"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]},
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                doc = documents.get(self.path)
                body = json.dumps(doc).encode()
                self.send_response(200 if doc else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: rsa.RSAPrivateKey | None = None, **claims: object) -> str:
        payload = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "tester",
            "exp": int(time.time()) + 600,
            **claims,
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": "k1"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["ext_proc", "http"])
def guarded(mesh, request):
    """One guarded sidecar per HTTP door of the Dapr API (ext_proc and HTTP/1.1)."""
    return mesh[0][request.param]


@pytest.fixture(scope="module")
def mesh(tandem_home, tmp_path_factory):
    issuer = Issuer()
    resources = tmp_path_factory.mktemp("res")
    (resources / "middleware.yaml").write_text(
        COMPONENTS.format(issuer=issuer.url, audience=AUDIENCE)
    )
    callee_config = resources.parent / "callee.yaml"
    callee_config.write_text(CALLEE_CONFIG)
    port = free_port()
    app = subprocess.Popen([sys.executable, str(APPS / "echo_app.py"), str(port)])
    callee = start_sidecar(
        tandem_home,
        "callee",
        "--app-port",
        str(port),
        "--resources-path",
        str(resources),
        "--config",
        str(callee_config),
    )
    guarded = {}
    for transport in ("ext_proc", "http"):
        config = resources.parent / f"guarded-{transport}.yaml"
        config.write_text(GUARDED_CONFIG)
        guarded[transport] = start_sidecar(
            tandem_home,
            f"guarded-{transport.replace('_', '-')}",
            "--resources-path",
            str(resources),
            "--config",
            str(config),
            "--api-transport",
            transport,
        )
    good = {"authorization": f"Bearer {issuer.token()}"}
    for sidecar in guarded.values():
        wait_until(
            lambda sidecar=sidecar: (
                httpx.get(
                    f"{sidecar.base}/v1.0/invoke/callee/method/ready", headers=good, timeout=5
                ).status_code
                == 200
            ),
            60,
            "the guarded sidecar to admit a good token (OpenID discovery done)",
        )
    yield guarded, callee, issuer, resources.parent
    for s in (*guarded.values(), callee):
        s.stop()
    app.terminate()
    app.wait(10)
    issuer.close()


def test_bearer_refuses_a_missing_token(mesh, guarded):
    assert httpx.get(f"{guarded.base}/v1.0/metadata", timeout=10).status_code == 401


def test_bearer_refuses_a_badly_signed_token(mesh, guarded):
    issuer = mesh[2]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers = {"authorization": f"Bearer {issuer.token(key=stranger)}"}
    r = httpx.get(f"{guarded.base}/v1.0/metadata", headers=headers, timeout=10)
    assert r.status_code == 401


def test_bearer_refuses_a_token_for_another_audience(mesh, guarded):
    issuer = mesh[2]
    headers = {"authorization": f"Bearer {issuer.token(aud='someone-else')}"}
    r = httpx.get(f"{guarded.base}/v1.0/metadata", headers=headers, timeout=10)
    assert r.status_code == 403  # Envoy's answer to a valid token it may not accept


def test_bearer_admits_a_good_token_and_health_stays_open(mesh, guarded):
    issuer = mesh[2]
    good = {"authorization": f"Bearer {issuer.token()}"}
    r = httpx.get(f"{guarded.base}/v1.0/metadata", headers=good, timeout=10)
    assert r.status_code == 200
    assert r.json()["id"] == guarded.app_id
    assert httpx.get(f"{guarded.base}/v1.0/healthz", timeout=10).status_code == 204


def _invoke_until_admitted(url: str, **kwargs: object) -> httpx.Response:
    """The callee's rate limit may refuse a call right after another test's burst."""
    found: list[httpx.Response] = []

    def attempt() -> bool:
        found[:] = [httpx.request(url=url, timeout=10, **kwargs)]  # type: ignore[arg-type]
        return found[0].status_code != 429

    wait_until(attempt, 10, "a call the rate limit admits")
    return found[0]


def test_routeralias_maps_an_alias_to_its_invocation(mesh, guarded):
    issuer = mesh[2]
    good = {"authorization": f"Bearer {issuer.token()}"}
    r = _invoke_until_admitted(f"{guarded.base}/hello?x=1", method="GET", headers=good)
    assert r.status_code == 200
    assert r.json()["path"] == "/aliased"
    assert r.json()["query"] == "x=1"


def test_routerchecker_refuses_a_path_outside_its_rule(mesh, guarded):
    issuer = mesh[2]
    good = {"authorization": f"Bearer {issuer.token()}"}
    r = httpx.get(f"{guarded.base}/v1.0/invoke/callee/method/cat%20password", headers=good)
    assert r.status_code == 403


def test_uppercase_on_the_app_pipeline_reaches_the_app(mesh, guarded):
    issuer = mesh[2]
    good = {"authorization": f"Bearer {issuer.token()}"}
    r = _invoke_until_admitted(
        f"{guarded.base}/v1.0/invoke/callee/method/echo",
        method="POST",
        headers=good,
        content=b"hello tandem",
    )
    assert r.status_code == 201
    assert r.json()["body"] == "HELLO TANDEM"


def test_ratelimit_on_the_app_pipeline_limits(mesh, guarded):
    issuer = mesh[2]
    good = {"authorization": f"Bearer {issuer.token()}"}
    url = f"{guarded.base}/v1.0/invoke/callee/method/burst"
    with ThreadPoolExecutor(10) as pool:
        statuses = list(
            pool.map(lambda _: httpx.get(url, headers=good, timeout=10).status_code, range(30))
        )
    assert 429 in statuses, statuses
    assert set(statuses) <= {200, 429}


def test_an_edited_pipeline_applies_without_a_restart(mesh):
    guarded, issuer, configs = mesh[0]["ext_proc"], mesh[2], mesh[3]
    good = {"authorization": f"Bearer {issuer.token()}"}
    url = f"{guarded.base}/v1.0/invoke/callee/method/cat%20password"
    assert httpx.get(url, headers=good, timeout=10).status_code == 403
    # Without the routerchecker the same path reaches the app (once the old listener's
    # kept-alive connections have drained).
    (configs / "guarded-ext_proc.yaml").write_text(
        GUARDED_CONFIG.replace("    - {name: checker, type: middleware.http.routerchecker}\n", "")
    )
    wait_until(
        lambda: _invoke_until_admitted(url, method="GET", headers=good).status_code == 200,
        20,
        "the pipeline without the routerchecker",
    )
