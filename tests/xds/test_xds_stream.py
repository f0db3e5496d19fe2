"""The ADS state machine, driven without gRPC."""

from __future__ import annotations

import logging

import pytest
from xds_fixtures import names_in, request, sidecar, snapshot_for

from tandem.xds import resource_types as rt
from tandem.xds.stream import AdsStream

A, B, C = sidecar("a"), sidecar("b"), sidecar("c")

# By-URL invocation's clusters are in every snapshot (translate/http_endpoints.py).
URL_CLUSTERS = ["url:http", "url:https"]


def stream_with(*others: object) -> AdsStream:
    stream = AdsStream(node_id="a~1", log=logging.getLogger("test.ads"))
    stream.on_snapshot(snapshot_for(A, *others))  # type: ignore[arg-type]
    return stream


def test_first_wildcard_request_gets_the_full_set() -> None:
    stream = stream_with(B)

    [response] = stream.on_request(request(rt.CLUSTER))

    assert response.type_url == rt.CLUSTER
    assert names_in(response) == ["app:a", "app:b", *URL_CLUSTERS]
    assert response.nonce and response.version_info


def test_ack_of_the_current_version_sends_nothing() -> None:
    stream = stream_with(B)
    [sent] = stream.on_request(request(rt.CLUSTER))

    assert stream.on_request(request(rt.CLUSTER, nonce=sent.nonce, version=sent.version_info)) == []
    assert stream.counters.acks == 1


def test_named_types_carry_only_the_requested_names() -> None:
    stream = stream_with(B)

    [response] = stream.on_request(request(rt.ENDPOINT, names=("app:b",)))

    assert names_in(response) == ["app:b"]


def test_new_names_are_answered_even_at_the_same_version() -> None:
    stream = stream_with(B)
    [first] = stream.on_request(request(rt.ENDPOINT, names=("app:b",)))

    [second] = stream.on_request(
        request(
            rt.ENDPOINT, names=("app:a", "app:b"), nonce=first.nonce, version=first.version_info
        )
    )

    assert second.version_info == first.version_info
    assert names_in(second) == ["app:a", "app:b"]


def test_update_waits_for_the_ack_of_the_response_in_flight() -> None:
    stream = stream_with(B)
    [first] = stream.on_request(request(rt.CLUSTER))

    assert stream.on_snapshot(snapshot_for(A, B, C)) == []  # first is not ACKed yet
    [second] = stream.on_request(request(rt.CLUSTER, nonce=first.nonce, version=first.version_info))

    assert names_in(second) == ["app:a", "app:b", "app:c", *URL_CLUSTERS]
    assert second.nonce != first.nonce


def test_request_with_an_old_nonce_is_ignored() -> None:
    stream = stream_with(B)
    [first] = stream.on_request(request(rt.CLUSTER))
    stream.on_snapshot(snapshot_for(A, B, C))
    [second] = stream.on_request(request(rt.CLUSTER, nonce=first.nonce, version=first.version_info))

    assert stream.on_request(request(rt.CLUSTER, nonce=first.nonce)) == []
    assert stream.counters.stale == 1
    assert second.nonce != first.nonce


def test_nack_is_logged_with_its_detail_and_the_version_is_not_resent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = stream_with(B)
    [sent] = stream.on_request(request(rt.LISTENER))

    with caplog.at_level(logging.WARNING, logger="test.ads"):
        responses = stream.on_request(
            request(rt.LISTENER, nonce=sent.nonce, version="", nack="bad listener dapr_http")
        )

    assert responses == []
    assert stream.counters.nacks == 1
    [record] = [r for r in caplog.records if r.getMessage() == "NACK"]
    assert record.detail == "bad listener dapr_http"  # type: ignore[attr-defined]
    assert record.rejected_version == sent.version_info  # type: ignore[attr-defined]
    # The same snapshot again changes nothing; new listeners are sent.
    assert stream.on_snapshot(snapshot_for(A, B)) == []
    [fixed] = stream.on_snapshot(snapshot_for(sidecar("a", max_body_bytes=1024), B))
    assert fixed.type_url == rt.LISTENER
    assert fixed.version_info != sent.version_info


def test_a_snapshot_change_is_pushed_in_cds_eds_lds_rds_order() -> None:
    stream = stream_with()
    sent = {}
    for url, names in (
        (rt.ROUTE, ("dapr_http", "dapr_grpc", "dapr_inbound")),
        (rt.LISTENER, ()),
        (rt.ENDPOINT, ("app:a",)),
        (rt.CLUSTER, ()),
    ):
        [sent[url]] = stream.on_request(request(url, names=names))
        stream.on_request(request(url, names=names, nonce=sent[url].nonce))

    pushed = stream.on_snapshot(snapshot_for(A, B))

    # Listeners do not depend on the other apps, so LDS has nothing new.
    assert [r.type_url for r in pushed] == [rt.CLUSTER, rt.ENDPOINT, rt.ROUTE]


def test_first_request_on_a_new_stream_is_answered_even_if_the_client_has_the_version() -> None:
    old = stream_with(B)
    [sent] = old.on_request(request(rt.CLUSTER))
    new = stream_with(B)

    [again] = new.on_request(request(rt.CLUSTER, version=sent.version_info))

    assert again.version_info == sent.version_info


def test_nothing_is_sent_before_a_snapshot_exists() -> None:
    stream = AdsStream(node_id="x~1", log=logging.getLogger("test.ads"))

    assert stream.on_request(request(rt.CLUSTER)) == []
    assert len(stream.on_snapshot(snapshot_for(A))) == 1


def test_a_name_dropped_and_requested_again_is_sent_again() -> None:
    stream = stream_with(B)
    [first] = stream.on_request(request(rt.ENDPOINT, names=("app:b",)))
    assert stream.on_request(request(rt.ENDPOINT, names=(), nonce=first.nonce)) == []

    [again] = stream.on_request(request(rt.ENDPOINT, names=("app:b",), nonce=first.nonce))

    assert names_in(again) == ["app:b"]
    assert again.version_info == first.version_info
