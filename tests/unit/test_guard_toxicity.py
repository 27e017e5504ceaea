"""The toxicity rail: artifact, scoring, laziness, and its place in the scan registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stratus.guard import toxicity
from stratus_tools.guard.scan import RAILS
from stratus_tools.guard.training import load_labelled_jsonl, stratified_split


@pytest.fixture(scope="module")
def classifier() -> toxicity.ToxicityClassifier:
    return toxicity.ToxicityClassifier()


def test_artifact_is_small_and_carries_its_threshold_data_hash_and_metrics() -> None:
    npz, meta = toxicity.DEFAULT_MODEL.with_suffix(".npz"), toxicity.DEFAULT_MODEL.with_suffix(".json")
    assert npz.stat().st_size < 3 * 1024 * 1024
    recorded = json.loads(meta.read_text(encoding="utf-8"))
    assert 0.0 < recorded["threshold"] < 1.0
    assert len(recorded["data"]["sha256"]) == 64
    assert {"validation", "toxicity_cases", "benign_chat"} <= set(recorded["metrics"])
    assert toxicity.ToxicityClassifier().threshold == recorded["threshold"]


@pytest.mark.parametrize("text", [
    "You are a worthless idiot and nobody wants you here.",
    "I will find you and break your legs.",
    "Shut up, you pathetic loser.",
])
def test_obviously_toxic_text_is_flagged(classifier: toxicity.ToxicityClassifier, text: str) -> None:
    assert classifier.assess_one(text).flagged


@pytest.mark.parametrize("text", [
    "Thanks, the summary of the contract was very clear.",
    "Kill the worker process and execute the cleanup script.",
    "I think this plan is badly reasoned and too expensive.",
])
def test_civil_text_and_technical_idiom_pass(classifier: toxicity.ToxicityClassifier, text: str) -> None:
    assert not classifier.assess_one(text).flagged


def test_one_insult_in_a_long_answer_is_found_by_its_sentence(classifier: toxicity.ToxicityClassifier) -> None:
    # Given a long, otherwise helpful answer with one insulting sentence
    helpful = "The invoice was issued on the first of March and is payable within thirty days. " * 12
    answer = helpful + "Honestly, you are a brainless idiot for asking."
    # When it is assessed, Then the sentence carries the score
    assessed = classifier.assess_one(answer)
    assert assessed.flagged and assessed.sentence == "Honestly, you are a brainless idiot for asking."
    assert assessed.score > classifier.model.raw_score(answer)


def test_a_policy_threshold_overrides_the_artifacts_and_is_validated() -> None:
    assert toxicity.ToxicityClassifier(threshold=0.99).threshold == 0.99
    with pytest.raises(ValueError, match="within 0..1"):
        toxicity.ToxicityClassifier(threshold=1.5).model  # noqa: B018


def test_a_missing_artifact_names_the_script_that_builds_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="train_toxicity.py"):
        toxicity.ToxicityClassifier(tmp_path / "nope").model  # noqa: B018


def test_get_classifier_is_lazy_and_shared() -> None:
    code = ("import sys; from stratus.guard import toxicity; c = toxicity.get_classifier();"
            "assert not c._model.loaded and 'stratus.guard.injection' not in sys.modules;"
            "assert toxicity.get_classifier() is c")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_rail_blocks_over_threshold_and_names_the_sentence() -> None:
    result = RAILS["toxicity"].check("The invoice is due in thirty days. You are a stupid moron.")
    assert result.verdict == "block" and result.details == {"sentence": "You are a stupid moron."}
    assert RAILS["toxicity"].check("The invoice is due in thirty days.").to_json()["verdict"] == "pass"


def test_the_test_set_is_not_in_the_training_set_and_the_split_is_stratified() -> None:
    train, labels = load_labelled_jsonl(toxicity.TRAIN_SET, "toxic")
    cases, _ = load_labelled_jsonl(toxicity.CASES, "toxic")
    assert not {t.casefold() for t in train} & {t.casefold() for t in cases}
    kept, held = stratified_split(labels, 0.25, seed=1)
    assert sorted([*kept, *held]) == list(range(len(labels)))
    assert abs(labels[held].mean() - labels.mean()) < 0.05
