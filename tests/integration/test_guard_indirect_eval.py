"""The regression gate for the indirect-injection detector: the shipped artifact, scored on a fixed sample
of its held-out test sets (every 5th clean/attacked pair, all of ipi_coding_agent), must keep the figures
recorded in evals/guard/thresholds.json. `stratus eval guard --rail indirect` gates the whole sets."""

from __future__ import annotations

import json

from stratus.guard.indirect import IndirectModel
from stratus_tools.guard import indirect_eval
from stratus_tools.guard import indirect_sets as S
from stratus_tools.guard.scan import check_thresholds
from stratus_tools.guard.training import files_sha256

SAMPLE = 5


def test_the_artifact_was_fitted_and_calibrated_on_the_sets_we_evaluate() -> None:
    model = IndirectModel.load()
    assert model.metadata["set_sha256"] == files_sha256([S.INDIRECT_SPLICED])
    assert model.metadata["validation"]["metrics"]["fpr"] <= 0.01  # the threshold rule held on validation


def test_held_out_figures_stay_at_or_above_their_recorded_floors() -> None:
    measurements = indirect_eval.evaluate(every=SAMPLE)
    assert {m.dataset for m in measurements} == {f"{n}@1/{SAMPLE}" for n in (
        "spliced-documents", "spliced-tool-results", "ipi-coding-agent")}
    assert all(m.n > 0 for m in measurements)
    thresholds = json.loads((S.EVALS / "thresholds.json").read_text(encoding="utf-8"))
    assert check_thresholds(measurements, thresholds) == []


def test_v3_was_chosen_on_the_agent_validation_set_and_keeps_its_floors() -> None:
    # indirect-v3 (context features) is measured beside the default on the same sample: docs/guard.md.
    from stratus.guard.indirect import CONTEXT, MODEL_DIR
    from stratus_tools.guard import indirect_validation as V

    stem = MODEL_DIR / "indirect-v3"
    v3 = IndirectModel.load(stem)
    assert v3.context == CONTEXT
    assert v3.metadata["set_sha256"] == files_sha256([S.INDIRECT_SPLICED])
    assert v3.metadata["validation_set_sha256"] == files_sha256([V.AGENT_VALIDATION])
    validation = v3.metadata["validation"]["metrics"]
    assert validation["flagged/clean"] <= 0.01 and validation["flagged/tau2"] <= 0.01  # the threshold rule
    # Its validation sources were never its training sources (v2 trained on two of them).
    payloads = {k for k in v3.metadata["training"] if k.startswith("payloads/")}
    assert payloads == {"payloads/s-labs-train", "payloads/bastioncorpus-not-tool-output", "payloads/spikee",
                        "payloads/pyrit"}
    measurements = indirect_eval.evaluate(every=SAMPLE, stem=stem)
    assert {m.dataset for m in measurements} == {f"indirect-v3/{n}@1/{SAMPLE}" for n in (
        "spliced-documents", "spliced-tool-results", "ipi-coding-agent")}
    thresholds = json.loads((S.EVALS / "thresholds.json").read_text(encoding="utf-8"))
    assert check_thresholds(measurements, thresholds) == []
