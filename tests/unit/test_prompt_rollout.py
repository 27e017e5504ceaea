"""Prompt rollout assignment and judgement, without a database: the candidate's share of many sticky keys is
about the rollout's share, a key stays on its side, raising the share only adds keys, two rollouts split
independently, the most specific key wins; and the comparison decides only with enough samples."""

from __future__ import annotations

import uuid

import pytest

from stratus.prompts.rollout import bucket, compare, on_candidate, sticky_key
from stratus.workflow_state import StickyKeys

pytestmark = pytest.mark.unit

KEYS = [f"user:u{i}" for i in range(20_000)]


@pytest.mark.parametrize("share", [1, 10, 50, 90])
def test_the_candidate_gets_about_its_share_of_keys(share: float) -> None:
    rollout_id = str(uuid.UUID(int=share))
    on = sum(on_candidate(rollout_id, share, k) for k in KEYS) / len(KEYS)
    # 20k keys: the binomial standard error is at most 0.35 points; 1.5 points is over four of them
    assert abs(on * 100 - share) < 1.5, on


def test_assignment_is_sticky_monotonic_and_independent_per_rollout() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    at_10 = {k for k in KEYS if on_candidate(a, 10, k)}
    assert at_10 == {k for k in KEYS if on_candidate(a, 10, k)}  # the same keys every time
    at_30 = {k for k in KEYS if on_candidate(a, 30, k)}
    assert at_10 < at_30  # raising the share keeps everyone already on the candidate there
    other = {k for k in KEYS if on_candidate(b, 10, k)}
    overlap = len(at_10 & other) / len(at_10)
    assert 0.05 < overlap < 0.15  # another rollout's 10% is independent: about 10% of these
    assert not any(on_candidate(a, 0, k) for k in KEYS[:1000])
    assert all(on_candidate(a, 100, k) for k in KEYS[:1000])
    assert not on_candidate(a, 100, None)  # no key: no part in the rollout
    assert 0 <= bucket(a, "user:x") < 1


def test_the_most_specific_key_the_request_has_wins_from_sticky_by_down() -> None:
    full = StickyKeys(conversation="c1", user="u1", key="k1")
    assert sticky_key("conversation", full) == "conversation:c1"
    assert sticky_key("user", full) == "user:u1"
    assert sticky_key("key", full) == "key:k1"
    assert sticky_key("conversation", StickyKeys(user="u1", key="k1")) == "user:u1"
    assert sticky_key("conversation", StickyKeys(key="k1")) == "key:k1"
    assert sticky_key("user", StickyKeys(conversation="c1")) is None
    assert sticky_key("conversation", StickyKeys()) is None


ROLLOUT = {"candidate_version": 2, "min_samples": 30, "margin": 0.05, "metric": "overall"}


def test_a_regression_needs_enough_samples_on_both_sides_and_more_than_the_margin() -> None:
    assert compare(ROLLOUT, {1: (100, 0.9), 2: (29, 0.1)})["decision"] == "insufficient"
    assert compare(ROLLOUT, {2: (100, 0.1)})["decision"] == "insufficient"
    worse = compare(ROLLOUT, {1: (100, 0.9), 2: (30, 0.8)})
    assert worse["decision"] == "regression"
    assert worse["candidate"] == {"version": 2, "n": 30, "mean": 0.8}
    assert worse["baseline"] == {"versions": [1], "n": 100, "mean": 0.9}
    assert compare(ROLLOUT, {1: (100, 0.9), 2: (30, 0.86)})["decision"] == "ok"  # within the margin
    assert compare(ROLLOUT, {1: (100, 0.7), 2: (30, 0.95)})["decision"] == "ok"  # better
    # The label moved during the rollout: its versions are pooled, weighted by their samples
    pooled = compare(ROLLOUT, {1: (30, 0.9), 3: (10, 0.5), 2: (40, 0.78)})
    assert pooled["baseline"] == {"versions": [1, 3], "n": 40, "mean": 0.8} and pooled["decision"] == "ok"


def test_the_api_and_the_cli_offer_the_metrics_the_domain_judges_on() -> None:
    from typing import get_args

    from stratus.gateway.routes.rollouts import Metric
    from stratus.prompts.rollout import METRICS
    from stratus_tools.cli.rollouts import METRICS as CLI_METRICS

    assert get_args(Metric) == METRICS == CLI_METRICS
