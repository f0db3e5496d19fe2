"""``python -m tandem.k8s.enrol``: the injected init container that gets a sidecar enrolled.

It runs once before the sidecar starts: makes the workload key pair next to the sidecar
(``RUN_DIR/workload.key``, owner-only; the key never leaves the pod), sends the control
plane the CSR, the identity the pod claims and the pod's projected ServiceAccount token
(``tandem.identity.v1.Enrolment/Enrol``), and writes the answer as a bootstrap fragment
``RUN_DIR/enrolment.json`` that Envoy merges into its bootstrap (``--config-path``):
the node metadata's ``csr`` and ``credential``, as ``tandem run`` writes them self-hosted.

Retries while the control plane is unreachable or the API server cannot review the
token, up to ``--timeout`` seconds; a refusal ends it at once with the reason (exit 1:
the kubelet restarts the container with back-off, the pod's events show the message).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import grpc

from tandem.k8s.enrol_service import METHOD, SERVICE
from tandem.k8s.workload_identity import EnrolRequest
from tandem.placement import wire
from tandem.xds.ca import DEFAULT_TRUST_DOMAIN, write_private_file
from tandem.xds.enrolment import WorkloadKey

KEY_FILE = "workload.key"
FRAGMENT_FILE = "enrolment.json"
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def bootstrap_fragment(csr: str, credential: str) -> dict[str, object]:
    return {"node": {"metadata": {"csr": csr, "credential": credential}}}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tandem.k8s.enrol", description=__doc__)
    p.add_argument("--control-plane", required=True, help="HOST:PORT of the control plane")
    p.add_argument("--token-file", required=True, type=Path)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--app-id", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--node-id", required=True)
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    p.add_argument("--timeout", type=float, default=120.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    key = WorkloadKey.generate()
    deadline = time.monotonic() + a.timeout
    delay = 0.5
    with grpc.insecure_channel(a.control_plane) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/{METHOD}",
            request_serializer=wire.encode,
            response_deserializer=wire.decode,
        )
        while True:
            try:
                # Read each time: the kubelet rotates the projected token.
                token = a.token_file.read_text().strip()
                request = EnrolRequest(
                    node_id=a.node_id,
                    app_id=a.app_id,
                    namespace=a.namespace,
                    csr=key.csr_pem,
                    token=token,
                    trust_domain=a.trust_domain,
                )
                answer = call(request.to_json(), timeout=15)
                break
            except OSError as exc:
                error = f"cannot read the ServiceAccount token: {exc}"
                retry = True
            except grpc.RpcError as exc:
                error = f"{exc.code().name}: {exc.details()}"
                retry = exc.code() in _RETRYABLE
            if not retry or time.monotonic() + delay > deadline:
                print(f"tandem enrol: not enrolled: {error}", file=sys.stderr)
                return 1
            print(f"tandem enrol: retrying: {error}", file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    key.write_key(a.run_dir / KEY_FILE)
    fragment = bootstrap_fragment(key.csr_pem, str(answer["credential"]))
    write_private_file(a.run_dir / FRAGMENT_FILE, json.dumps(fragment).encode())
    print(f"tandem enrol: enrolled as {answer.get('spiffe_id')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
