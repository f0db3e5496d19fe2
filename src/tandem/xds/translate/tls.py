"""mTLS between sidecars: SDS secrets, the inbound listener's and the app clusters' TLS.

Each Envoy receives two SDS secrets over the ADS stream:
- ``default``: its workload certificate (inline PEM) and its private key **by file name**,
  the key file ``tandem run`` wrote next to the sidecar, so no key crosses the wire;
- ``ROOTCA``: the mesh trust bundle.

The inbound listener (``dapr_inbound``) requires a client certificate that chains to
``ROOTCA`` and carries a SPIFFE URI SAN; ``app:X`` clusters present ``default`` and accept
only a server certificate whose URI SAN is one of X's SPIFFE ids. TLS 1.3 only.
Listeners and clusters wait for their secrets forever (``initial_fetch_timeout: 0s``)
rather than come up with an empty TLS context.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate._protos import pack, seconds

WORKLOAD_SECRET = "default"
TRUST_BUNDLE_SECRET = "ROOTCA"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
SPIFFE_PREFIX = "spiffe://"
# The inbound listener speaks both; the caller's cluster picks per downstream protocol.
ALPN = ("h2", "http/1.1")

_San = common_pb2.SubjectAltNameMatcher


def secrets(sidecar: Sidecar, mesh: Mesh) -> list[secret_pb2.Secret]:
    """The two SDS secrets of ``sidecar``; none when mTLS is off mesh-wide."""
    security = mesh.security
    if not security.mtls:
        return []
    chain = security.certificates.get(sidecar.node_id)
    if chain is None or sidecar.key_path is None:
        raise ValueError(f"node {sidecar.node_id!r} has no workload certificate to serve")
    return [
        secret_pb2.Secret(
            name=WORKLOAD_SECRET,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_string=chain),
                private_key=base_pb2.DataSource(filename=sidecar.key_path),
            ),
        ),
        secret_pb2.Secret(
            name=TRUST_BUNDLE_SECRET,
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_string=security.trust_bundle_pem)
            ),
        ),
    ]


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
        initial_fetch_timeout=seconds(0),
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _uri_san(matcher: string_pb2.StringMatcher) -> common_pb2.SubjectAltNameMatcher:
    return _San(san_type=_San.URI, matcher=matcher)


def _common(
    sans: Iterable[common_pb2.SubjectAltNameMatcher], alpn: Iterable[str] = ()
) -> tls_pb2.CommonTlsContext:
    return tls_pb2.CommonTlsContext(
        # Envoy's client default maximum is TLS 1.2: both ends are pinned to 1.3.
        tls_params=common_pb2.TlsParameters(
            tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
            tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
        ),
        tls_certificate_sds_secret_configs=[_sds(WORKLOAD_SECRET)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=list(sans)
            ),
            validation_context_sds_secret_config=_sds(TRUST_BUNDLE_SECRET),
        ),
        alpn_protocols=list(alpn),
    )


def inbound_transport_socket(mesh: Mesh) -> base_pb2.TransportSocket | None:
    """Server side of the sidecar-to-sidecar hop: a client certificate from our CA required."""
    if not mesh.security.mtls:
        return None
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=_common(
            [_uri_san(string_pb2.StringMatcher(prefix=SPIFFE_PREFIX))], ALPN
        ),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def upstream_transport_socket(mesh: Mesh, app_id: str) -> base_pb2.TransportSocket | None:
    """Client side towards ``app:{app_id}``: the callee must prove one of its SPIFFE ids."""
    if not mesh.security.mtls:
        return None
    ids = sorted({instance.spiffe_id for instance in mesh.instances(app_id)})
    context = tls_pb2.UpstreamTlsContext(
        # No ALPN list here: Envoy then offers the protocol the cluster chose per request
        # (h2 for gRPC callers, http/1.1 otherwise).
        common_tls_context=_common(_uri_san(string_pb2.StringMatcher(exact=i)) for i in ids),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
