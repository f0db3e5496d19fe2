"""Two bare Envoys joined by mTLS (or plain HTTP): the floor of any sidecar invocation path."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tandem.cli.ports import free_port
from tandem.envoy import envoy_binary


def _cert(subject: str, issuer_key, issuer_name, *, ca: bool, san: str | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)]))
        .issuer_name(
            issuer_name or x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)])
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=False
        )
    cert = b.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def _pem(key, cert) -> tuple[str, str]:
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


def _hcm(stat: str, cluster: str) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat,
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }


def _cluster(name: str, port: int, tls: dict | None, http2: bool) -> dict:
    c: dict = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    if tls:
        c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return c


class EnvoyPair:
    """caller Envoy :front → callee Envoy :back (mTLS when ``mtls``) → app."""

    def __init__(self, app_port: int, *, mtls: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ef", dir="/tmp"))
        self.front, back = free_port(), free_port()
        common_up: dict | None = None
        down: dict | None = None
        if mtls:
            ca_key, ca = _cert("bench-ca", None, None, ca=True)
            ck, cc = _cert(
                "caller", ca_key, ca.subject, ca=False, san="spiffe://public/ns/default/a"
            )
            sk, sc = _cert(
                "callee", ca_key, ca.subject, ca=False, san="spiffe://public/ns/default/b"
            )
            ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
            (c_cert, c_key), (s_cert, s_key) = _pem(ck, cc), _pem(sk, sc)
            common_up = {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "tls_certificates": [
                        {
                            "certificate_chain": {"inline_string": c_cert},
                            "private_key": {"inline_string": c_key},
                        }
                    ],
                    "validation_context": {
                        "trusted_ca": {"inline_string": ca_pem},
                        "match_typed_subject_alt_names": [
                            {
                                "san_type": "URI",
                                "matcher": {"exact": "spiffe://public/ns/default/b"},
                            }
                        ],
                    },
                },
            }
            down = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": True,
                    "common_tls_context": {
                        "alpn_protocols": ["h2"],
                        "tls_certificates": [
                            {
                                "certificate_chain": {"inline_string": s_cert},
                                "private_key": {"inline_string": s_key},
                            }
                        ],
                        "validation_context": {"trusted_ca": {"inline_string": ca_pem}},
                    },
                },
            }
        caller = {
            "admin": {"address": {"pipe": {"path": str(self.dir / "a.sock")}}},
            "static_resources": {
                "listeners": [
                    {
                        "name": "front",
                        "address": {
                            "socket_address": {"address": "127.0.0.1", "port_value": self.front}
                        },
                        "filter_chains": [{"filters": [_hcm("front", "peer")]}],
                    }
                ],
                "clusters": [_cluster("peer", back, common_up, http2=True)],
            },
        }
        back_chain: dict = {"filters": [_hcm("back", "app")]}
        if down:
            back_chain["transport_socket"] = down
        callee = {
            "admin": {"address": {"pipe": {"path": str(self.dir / "b.sock")}}},
            "static_resources": {
                "listeners": [
                    {
                        "name": "back",
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": back}},
                        "filter_chains": [back_chain],
                    }
                ],
                "clusters": [_cluster("app", app_port, None, http2=False)],
            },
        }
        self.procs = []
        for name, cfg in (("caller", caller), ("callee", callee)):
            path = self.dir / f"{name}.json"
            path.write_text(json.dumps(cfg))
            self.procs.append(
                subprocess.Popen(
                    [
                        str(envoy_binary()),
                        "-c",
                        str(path),
                        "--disable-hot-restart",
                        "--log-level",
                        "error",
                        "--concurrency",
                        "1",
                    ],
                    stderr=subprocess.DEVNULL,
                )
            )

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(10)
