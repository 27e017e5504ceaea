"""Groundedness on our labelled set (evals/guard/groundedness_cases.jsonl) and on whole cited answers.

The threshold must be the one the tune half chooses, and the held-out half must keep its recorded figures.
Positive = unsupported (what the rail flags). Recorded at SUPPORT_THRESHOLD 0.498 on the 24 held-out pairs:
precision 0.889, recall 0.667, false-positive rate 0.083. Misses are changed quantities written without
digits ("every hour" for "every 15 minutes") and antonym contradictions the similarity cannot see.
"""

from __future__ import annotations

import numpy as np
import pytest

from stratus.embeddings import Embedder
from stratus.guard import grounding as G
from stratus.guard.injection import binary_metrics
from stratus.llm.types import ContextPassage

RECORDED_TEST = {"precision": 0.889, "recall": 0.667, "fpr": 0.083}
MARGIN = 0.005  # floating-point differences between machines, not a case either way (one case is 0.083)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return G.get_embedder(G.EMBEDDING_MODEL)


def _flagged_metrics(split: str, embedder: Embedder) -> tuple[list[float], list[bool], dict]:
    cases = G.load_cases(split=split)
    scores = [G.score_case(c, embedder) for c in cases]
    supported = [c.supported for c in cases]
    m = binary_metrics(np.array(scores) < G.SUPPORT_THRESHOLD, ~np.array(supported))
    return scores, supported, m


def test_labelled_set_is_balanced_and_split_by_topic() -> None:
    cases = G.load_cases()
    assert len(cases) >= 40
    for split in ("tune", "test"):
        part = [c for c in cases if c.split == split]
        assert sum(c.supported for c in part) * 2 == len(part)
        assert {c.kind for c in part if not c.supported} == {"contradiction", "number", "invented"}
    tune_passages = {c.passage for c in cases if c.split == "tune"}
    assert not tune_passages & {c.passage for c in cases if c.split == "test"}


def test_threshold_is_the_one_the_tune_split_chooses(embedder: Embedder) -> None:
    scores, supported, _ = _flagged_metrics("tune", embedder)
    assert G.choose_threshold(scores, supported) == pytest.approx(G.SUPPORT_THRESHOLD, abs=0.005)


def test_held_out_split_keeps_recorded_figures(embedder: Embedder) -> None:
    _, _, m = _flagged_metrics("test", embedder)
    assert m["recall"] >= RECORDED_TEST["recall"] - MARGIN, m
    assert m["precision"] >= RECORDED_TEST["precision"] - MARGIN, m
    assert m["fpr"] <= RECORDED_TEST["fpr"] + MARGIN, m


def _passage(number: int, text: str) -> ContextPassage:
    return ContextPassage(number=number, chunk_id=number, document_id=f"d{number}", document_version=1,
                          source_key=f"docs/{number}.md", text=text)


def test_answer_sentences_are_checked_against_the_passages_they_cite(embedder: Embedder) -> None:
    passages = [
        _passage(1, "API keys expire after 90 days. An expired key returns the error AUTH_KEY_EXPIRED."),
        _passage(2, "Uploads larger than 50 MB are rejected with a 413 status."),
    ]
    # Given a grounded answer, each sentence citing the passage that says it
    good = G.groundedness("Keys stop working after 90 days [1]. Files over 50 MB are refused with a 413 [2].",
                          passages, embedder=embedder)
    assert good.supported and good.score >= G.SUPPORT_THRESHOLD
    assert [s.evidence_passage for s in good.sentences] == [1, 2]
    # When the same true sentence cites the wrong passage, or a passage that does not exist
    wrong = G.groundedness("Keys stop working after 90 days [2]. Files over 50 MB are refused [7].",
                           passages, embedder=embedder)
    assert not wrong.supported and len(wrong.unsupported) == 2
    assert wrong.sentences[1].unknown_citations == (7,) and wrong.sentences[1].score == 0.0
    # A sentence without markers is checked against every passage; a changed figure is named
    mixed = G.groundedness("Keys stop working after 90 days. Uploads over 80 MB are rejected [2].",
                           passages, embedder=embedder)
    assert mixed.sentences[0].supported and mixed.sentences[0].evidence_passage == 1
    assert mixed.sentences[1].missing_numbers == ("80",) and not mixed.supported
    assert mixed.score == min(s.score for s in mixed.sentences) <= mixed.mean


def test_an_answer_without_claims_or_context(embedder: Embedder) -> None:
    assert G.groundedness("Yes, it is.", [], embedder=embedder).sentences == []
    empty = G.groundedness("Keys expire after 90 days.", [], embedder=embedder)
    assert not empty.supported and empty.score == 0.0
