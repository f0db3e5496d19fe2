"""State samples (SDK and plain HTTP) run as `dapr run` would run them: save, get, delete,
bulk get, ETags and a transaction against a Redis state store."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("sample", ["state_sdk", "state_http"])
def test_state_sample_runs_unchanged(quickstarts, dapr_run, sample):
    flavour = sample.split("_")[1]
    run = dapr_run(
        quickstarts / sample,
        *("--app-id", f"order-processor-{flavour}", "--resources-path", "../components"),
        *("--", "python3", "app.py"),
    )
    code = run.wait(120)
    out = run.text()
    assert code == 0, out
    for order_id in (1, 2, 3):
        assert f'Getting Order: {{"orderId": {order_id}}}' in out, out
        assert f"Deleted Order: order_{order_id}" in out, out
    assert 'Bulk get: {"cart_1": "apples", "cart_2": "pears"' in out, out
    assert "Stale ETag refused:" in out, out
    assert "Transaction committed" in out, out
    assert f"state {flavour}: all checks passed" in out, out
