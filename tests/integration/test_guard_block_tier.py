"""The regression gate for the default input rail's block tier (injection-v3, the n-gram model): what it blocks
on a seeded sample of every report source, against the figures recorded by stratus_tools.guard.block_tier.

Blocking by default rests on one claim: ordinary text from sources never used to choose the tier is blocked
at most 2% of the time. This recomputes the tier from its choosing sources and the sample from scratch (n-grams:
seconds), and fails when the tier moved, when any figure falls past its margin, or when a benign source's
sample is blocked more than the claim allows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratus.guard.detector import BLOCK_TIERS
from stratus.guard.injection import DEFAULT_MODEL, InjectionModel
from stratus_tools.guard.block_tier import BLOCK_FPR, choose
from stratus_tools.guard.direct_eval import metrics_at, regressions, score_sources
from stratus_tools.guard.injection_sources import by_role


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    tier: dict[str, Any] = json.loads(BLOCK_TIERS.read_text(encoding="utf-8"))["models"][DEFAULT_MODEL.name]
    return tier


@pytest.fixture(scope="module")
def measured(recorded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    model = InjectionModel.load(DEFAULT_MODEL)
    assert model.block_threshold == recorded["block_threshold"] > model.threshold == recorded["threshold"]
    scored = score_sources(model.score, by_role("report"), cap=recorded["ci_sample"]["caps"])
    return metrics_at(scored, recorded["block_threshold"])


def test_the_block_tier_holds_its_recorded_figures(recorded: dict[str, Any], measured: dict[str, Any]) -> None:
    problems = regressions(measured, recorded["ci_sample"]["metrics"])
    assert not problems, problems


def test_ordinary_text_is_blocked_at_most_two_percent_of_the_time(recorded: dict[str, Any],
                                                                  measured: dict[str, Any]) -> None:
    # The claim blocking by default rests on, as recorded on whole sources by the tool (a rebuilt tier that
    # broke it fails here), and on today's CI sample with one text of slack where a sample is small.
    whole = recorded["metrics"]
    for name, m in whole.items():
        if name != "all-report-sources" and "fpr" in m:
            assert m["fpr"] <= BLOCK_FPR, (name, m)
            sample = measured[name]
            assert sample["fpr"] <= BLOCK_FPR + 1.0 / sample["benign"] + 1e-9, (name, sample)
    # What it blocks is what the docs say it blocks: most in-the-wild jailbreaks, the hard set's attacks.
    assert whole["in-the-wild-jailbreaks"]["recall"] >= 0.65 and whole["hard-set"]["recall"] >= 0.65, whole


def test_the_tier_is_what_the_rule_gives_on_the_choosing_sources_today(recorded: dict[str, Any]) -> None:
    # Recomputed from scratch (n-grams: seconds): the same sources, the same rule, the same tier.
    model = InjectionModel.load(DEFAULT_MODEL)
    tier, bound_by = choose(score_sources(model.score, by_role("threshold") + by_role("block")))
    assert (tier, bound_by) == (recorded["block_threshold"], recorded["bound_by"])
    tiers = json.loads(BLOCK_TIERS.read_text(encoding="utf-8"))
    chose = set(tiers["sources"]["threshold"]) | set(tiers["sources"]["block"])
    assert chose == {s.name for s in by_role("threshold") + by_role("block")}
    assert not chose & {s.name for s in by_role("report")} and set(recorded["metrics"]) - {"all-report-sources"} \
        == set(tiers["sources"]["report"])
    fpr = recorded["threshold_sources"]["at_block_threshold"]["fpr"]
    assert set(fpr) >= {"chitchat-threshold", "docs-threshold"} and max(fpr.values()) <= BLOCK_FPR, fpr
