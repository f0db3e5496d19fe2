"""Workload identity in a cluster: TokenReview answers (recorded as the API server returns
them) mapped to decisions, and the enrolment service asking a stand-in API server over
real HTTP through lightkube before it mints a credential."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver import ApiServer

from tandem.k8s import ca_secret
from tandem.k8s.enrol_service import EnrolmentService, LightkubeApi
from tandem.k8s.workload_identity import (
    DEFAULT_AUDIENCE,
    EnrolRequest,
    ReviewUnavailableError,
    identity_decision,
    review_decision,
)
from tandem.xds.ca import csr_public_key
from tandem.xds.enrolment import EnrolmentKey, IdentityRefusedError, WorkloadKey

FIXTURES = Path(__file__).parent / "fixtures"
POD_NAME = "orders-7d9f8c6b5-x2x9q"


def fixture(name: str) -> dict[str, Any]:
    value = json.loads((FIXTURES / name).read_text())
    assert isinstance(value, dict)
    return value


def _request(**changes: str) -> EnrolRequest:
    values = {
        "node_id": POD_NAME,
        "app_id": "orders",
        "namespace": "shop",
        "csr": WorkloadKey.generate().csr_pem,
        "token": "a-token",
    }
    values.update(changes)
    return EnrolRequest(**values)


def test_an_allowed_review_names_the_pod_and_its_service_account() -> None:
    reviewed = review_decision(fixture("tokenreview-allowed.json"), DEFAULT_AUDIENCE)
    assert (reviewed.namespace, reviewed.service_account, reviewed.pod_name) == (
        "shop",
        "orders",
        POD_NAME,
    )
    spiffe = identity_decision(_request(), reviewed, fixture("pod-orders.json"))
    assert spiffe == "spiffe://public/ns/shop/orders"


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ("tokenreview-expired.json", "does not accept the token"),
        ("tokenreview-wrong-audience.json", "not meant for audience"),
        ("tokenreview-legacy-secret-token.json", "not bound to a pod"),
    ],
)
def test_denied_reviews_refuse_the_sidecar(answer: str, refusal: str) -> None:
    with pytest.raises(IdentityRefusedError, match=refusal):
        review_decision(fixture(answer), DEFAULT_AUDIENCE)


def test_an_authenticated_token_for_another_audience_is_refused() -> None:
    review = fixture("tokenreview-allowed.json")
    review["status"]["audiences"] = ["https://kubernetes.default.svc.cluster.local"]
    with pytest.raises(IdentityRefusedError, match="not meant for audience"):
        review_decision(review, DEFAULT_AUDIENCE)


def test_an_api_server_that_cannot_review_defers_the_decision() -> None:
    with pytest.raises(ReviewUnavailableError, match="connection refused"):
        review_decision(fixture("tokenreview-error.json"), DEFAULT_AUDIENCE)


@pytest.mark.parametrize(
    ("claim", "refusal"),
    [
        ({"app_id": "payments"}, "claims app id 'payments', its pod is 'orders'"),
        ({"namespace": "bank"}, "claims namespace 'bank'"),
        ({"node_id": "payments-5c4b3a2-abcde"}, "claims node"),
    ],
)
def test_a_claim_that_does_not_match_the_token_and_its_pod_is_refused(
    claim: dict[str, str], refusal: str
) -> None:
    reviewed = review_decision(fixture("tokenreview-allowed.json"), DEFAULT_AUDIENCE)
    with pytest.raises(IdentityRefusedError, match=refusal):
        identity_decision(_request(**claim), reviewed, fixture("pod-orders.json"))


def test_a_token_of_a_deleted_pod_whose_name_was_reused_is_refused() -> None:
    reviewed = review_decision(fixture("tokenreview-allowed.json"), DEFAULT_AUDIENCE)
    pod = fixture("pod-orders.json")
    pod["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(IdentityRefusedError, match="no longer exists"):
        identity_decision(_request(), reviewed, pod)


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


async def test_the_enrolment_service_asks_the_api_server(api: ApiServer, tmp_path: Path) -> None:
    from lightkube import AsyncClient, KubeConfig

    pod = fixture("pod-orders.json")
    api.put(pod)
    allowed = fixture("tokenreview-allowed.json")["status"]
    allowed["user"]["extra"]["authentication.kubernetes.io/pod-uid"] = [
        api.get("Pod", "shop", POD_NAME)["metadata"]["uid"]  # type: ignore[index]
    ]
    api.token_reviews["good-token"] = allowed
    api.token_reviews["other-audience"] = fixture("tokenreview-wrong-audience.json")["status"]
    config = KubeConfig.from_file(api.kubeconfig(tmp_path / "kubeconfig"))
    client = AsyncClient(config=config)
    try:
        key = EnrolmentKey.generate()
        service = EnrolmentService(LightkubeApi(client), key, DEFAULT_AUDIENCE)
        request = _request(token="good-token")
        answer = await service.enrol(request.to_json())
        assert answer["spiffe_id"] == "spiffe://public/ns/shop/orders"
        # The same credential the ADS admission checks self-hosted.
        key.verify(answer["credential"], POD_NAME, answer["spiffe_id"], csr_public_key(request.csr))

        with pytest.raises(IdentityRefusedError, match="audience"):
            await service.enrol(_request(token="other-audience").to_json())
        with pytest.raises(IdentityRefusedError, match="does not accept"):
            await service.enrol(_request(token="made-up").to_json())
        with pytest.raises(IdentityRefusedError, match="app id"):
            await service.enrol(_request(token="good-token", app_id="payments").to_json())
        api.delete("Pod", "shop", POD_NAME)
        with pytest.raises(IdentityRefusedError, match="no longer exists"):
            await service.enrol(request.to_json())
    finally:
        await client.close()
    assert "POST /apis/authentication.k8s.io/v1/tokenreviews" in api.requests


async def test_replicas_share_the_ca_root_kept_in_a_secret(api: ApiServer, tmp_path: Path) -> None:
    from lightkube import AsyncClient, KubeConfig

    config = KubeConfig.from_file(api.kubeconfig(tmp_path / "kubeconfig"))
    first, second = AsyncClient(config=config), AsyncClient(config=config)
    try:
        ca1, key1 = await ca_secret.load_or_create(first, "tandem-system", "tandem-ca")
        ca2, key2 = await ca_secret.load_or_create(second, "tandem-system", "tandem-ca")
        assert ca1.trust_bundle_pem == ca2.trust_bundle_pem
        assert key1.secret == key2.secret
        # A damaged Secret is replaced rather than trusted.
        stored = api.get("Secret", "tandem-system", "tandem-ca")
        assert stored is not None
        damaged = copy.deepcopy(stored)
        damaged["data"]["root.key"] = "bm90IGEga2V5"
        api.put(damaged)
        ca3, _ = await ca_secret.load_or_create(first, "tandem-system", "tandem-ca")
        assert ca3.trust_bundle_pem != ca1.trust_bundle_pem
        assert (
            ca_secret.from_secret(api.get("Secret", "tandem-system", "tandem-ca") or {}) is not None
        )
    finally:
        await first.close()
        await second.close()
