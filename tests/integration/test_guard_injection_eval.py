"""The regression gate for the injection rail: the shipped model must keep its recorded figures.

Scores the held-out S-Labs test split and our own hard set with the committed artifact and fails when
recall drops or the false-positive rate rises past the figures recorded at training time (plus a small
margin for floating-point differences between machines), or past the issue's target.
"""

from __future__ import annotations

import pytest

from stratus.guard.injection import (
    BENIGN_CHAT,
    InjectionModel,
    binary_metrics,
    data_sha256,
    load_hard_set,
    load_split,
)

MARGIN = 0.01  # a handful of texts either way; a real regression moves these figures by more
TARGET_RECALL, TARGET_FPR = 0.90, 0.03  # issue 5: recall >= 0.90 at a false-positive rate <= 0.03


@pytest.fixture(scope="module")
def model() -> InjectionModel:
    return InjectionModel.load()


def test_artifact_was_trained_on_the_data_we_evaluate(model: InjectionModel) -> None:
    assert model.metadata["data"]["sha256"] == data_sha256()


def test_test_split_meets_target_and_recorded_figures(model: InjectionModel) -> None:
    texts, labels = load_split("test")
    m = binary_metrics(model.score(texts) >= model.threshold, labels)
    recorded = model.metadata["metrics"]["test"]
    assert m["recall"] >= TARGET_RECALL and m["fpr"] <= TARGET_FPR, m
    assert m["recall"] >= recorded["recall"] - MARGIN, (m, recorded)
    assert m["fpr"] <= recorded["fpr"] + MARGIN, (m, recorded)


def test_hard_set_does_not_regress(model: InjectionModel) -> None:
    # Our own hard cases are harder than the public set (figures in the artifact metadata); hold the line.
    texts, labels = load_hard_set()
    m = binary_metrics(model.score(texts) >= model.threshold, labels)
    recorded = model.metadata["metrics"]["hard_set"]
    assert m["recall"] >= recorded["recall"] - MARGIN, (m, recorded)
    assert m["fpr"] <= recorded["fpr"] + MARGIN, (m, recorded)


def test_benign_chat_openers_do_not_regress(model: InjectionModel) -> None:
    # Greetings and thanks were v1's worst false positives; the recorded share of flagged openers may not grow.
    texts, labels = load_hard_set(BENIGN_CHAT)
    assert not labels.any() and len(texts) >= 30
    m = binary_metrics(model.score(texts) >= model.threshold, labels)
    assert m["fpr"] <= model.metadata["metrics"]["benign_chat"]["fpr"] + MARGIN, m
