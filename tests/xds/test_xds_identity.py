"""Admission, rotation at half-life, and the mesh-wide mTLS settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from xds_fixtures import enrolment, metadata, node

from tandem.resources import ResourceError
from tandem.xds import resource_types as rt
from tandem.xds.ca import CertificateAuthority
from tandem.xds.cache import SnapshotCache
from tandem.xds.enrolment import EnrolmentKey, IdentityRefusedError
from tandem.xds.identity import Identities, MtlsSettings
from tandem.xds.ir import Sidecar
from tandem.xds.registry import Registry

START = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def _identities(clock: Clock, ttl: dt.timedelta = dt.timedelta(hours=24)) -> Identities:
    return Identities(
        CertificateAuthority.generate(START),
        EnrolmentKey.generate(),
        MtlsSettings(workload_cert_ttl=ttl),
        clock=clock,
    )


def _admit(ids: Identities, app_id: str, node_id: str) -> Sidecar:
    meta = {**metadata(app_id), **enrolment(ids, app_id, node_id)}
    sidecar = Sidecar.from_node_metadata(node_id, meta)
    ids.admit(sidecar, meta)
    return sidecar


def test_certificates_rotate_at_half_life_and_only_then() -> None:
    clock = Clock()
    ids = _identities(clock)
    _admit(ids, "a", "a~1")
    first = ids.certificate("a~1")
    assert first is not None
    assert ids.next_rotation() == START + dt.timedelta(hours=12)

    clock.now = START + dt.timedelta(hours=11, minutes=59)
    assert ids.rotate_due() == []
    clock.now = START + dt.timedelta(hours=12)
    assert ids.rotate_due() == ["a~1"]

    second = ids.certificate("a~1")
    assert second is not None and second.serial != first.serial
    assert ids.next_rotation() == START + dt.timedelta(hours=24)


def test_a_forgotten_node_is_neither_rotated_nor_served() -> None:
    clock = Clock()
    ids = _identities(clock)
    _admit(ids, "a", "a~1")

    ids.forget("a~1")
    clock.now = START + dt.timedelta(days=1)

    assert ids.rotate_due() == []
    assert ids.next_rotation() is None
    assert "a~1" not in ids.security().certificates


def test_a_node_without_a_key_path_is_refused() -> None:
    ids = _identities(Clock())
    meta = {**metadata("a"), **enrolment(ids, "a", "a~1")}
    del meta["key_path"]

    with pytest.raises(IdentityRefusedError, match="names no key_path"):
        ids.admit(Sidecar.from_node_metadata("a~1", meta), meta)


def test_the_registry_pushes_a_rotated_certificate_as_a_new_sds_version() -> None:
    clock = Clock()
    ids = _identities(clock)
    cache = SnapshotCache()
    registry = Registry(cache, ids)
    registry.on_stream_open(1, node("a", identities=ids))
    before = cache.get_snapshot("a~1")
    assert before is not None and set(before.of_type(rt.SECRET)) == {"default", "ROOTCA"}

    clock.now = START + dt.timedelta(hours=12)
    assert registry.rotate_certificates() == ["a~1"]

    after = cache.get_snapshot("a~1")
    assert after is not None
    assert after.version(rt.SECRET) != before.version(rt.SECRET)
    assert after.version(rt.CLUSTER) == before.version(rt.CLUSTER)
    assert after.version(rt.LISTENER) == before.version(rt.LISTENER)


def _config(tmp_path: Path, mtls: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: daprsystem}\n"
        f"spec:\n{mtls}"
    )
    return path


def test_mtls_stays_on_unless_the_configuration_says_enabled_false(tmp_path: Path) -> None:
    assert MtlsSettings().enabled
    assert MtlsSettings.from_configuration(_config(tmp_path, "  tracing: {}\n")).enabled
    assert MtlsSettings.from_configuration(
        _config(tmp_path, "  mtls: {workloadCertTTL: 1h}\n")
    ).enabled
    assert not MtlsSettings.from_configuration(
        _config(tmp_path, "  mtls: {enabled: false}\n")
    ).enabled


def test_certificate_lifetime_and_skew_come_from_the_configuration(tmp_path: Path) -> None:
    settings = MtlsSettings.from_configuration(
        _config(tmp_path, "  mtls: {enabled: true, workloadCertTTL: 90m, allowedClockSkew: 1m}\n")
    )

    assert settings.workload_cert_ttl == dt.timedelta(minutes=90)
    assert settings.allowed_clock_skew == dt.timedelta(minutes=1)


def test_an_absurdly_short_certificate_lifetime_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match=r"spec\.mtls: workloadCertTTL must be at least"):
        MtlsSettings.from_configuration(_config(tmp_path, "  mtls: {workloadCertTTL: 1s}\n"))
