"""The token buckets behind the quotas and the bound on metric labels (pure logic)."""

from __future__ import annotations

from plantstream.ingest.admission import RateLimiter
from plantstream.ingest.metrics import OTHER_FACILITIES, BoundedLabels


def test_a_batch_costs_one_token_per_reading_and_a_refused_one_takes_nothing() -> None:
    limiter = RateLimiter(100, burst=200)
    assert limiter.admit("plant-a", 150) == 0
    wait = limiter.admit("plant-a", 150)  # 50 left: refused, told how long to wait
    assert 0.4 < wait <= 1.0
    assert limiter.admit("plant-a", 40) == 0  # the refusal took nothing
    assert limiter.admit("plant-b", 200) == 0  # every facility has a bucket of its own


def test_a_cost_beyond_the_burst_waits_for_a_full_bucket_not_for_ever() -> None:
    limiter = RateLimiter(10, burst=20)
    assert limiter.admit("k", 500) == 0
    assert limiter.wait_for("k", 500) > 0


def test_a_refund_gives_back_what_a_failed_request_took() -> None:
    limiter = RateLimiter(1, burst=10)
    assert limiter.admit("k", 10) == 0
    limiter.refund("k", 10)
    assert limiter.wait_for("k", 10) == 0


def test_quiet_buckets_are_dropped_once_too_many_are_held() -> None:
    limiter = RateLimiter(1_000_000, burst=2, max_keys=50)
    for i in range(500):  # made-up keys (facilities), each full again a moment later
        limiter.admit(f"invented-{i}")
    assert len(limiter) <= 50


def test_labels_past_the_bound_fold_into_other() -> None:
    labels = BoundedLabels(3)
    assert [labels(f"f{i}") for i in range(5)] == ["f0", "f1", "f2"] + [OTHER_FACILITIES] * 2
    assert labels("f1") == "f1"
    assert len(labels) == 3
