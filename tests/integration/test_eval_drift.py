"""Drift with the real embedder on the labelled sets: support questions against held-out support questions
(must not drift) and against other kinds of input (must drift). The figures are in docs/evals.md."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from stratus.evals.drift import DriftReport, measure_drift

EVALS = Path(__file__).resolve().parents[2] / "evals"


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (EVALS / name).read_text().splitlines() if line.strip()]


def _support_split(salt: str) -> tuple[list[str], list[str]]:
    """Support/HR/IT questions (cache pairs and holdout, retrieval queries), 60/40 by group: a question and
    its rewordings stay on one side, so the held-out side asks new questions, not copies of baseline ones."""
    groups: dict[str, set[str]] = {}
    for name in ("cache/pairs.jsonl", "cache/holdout.jsonl"):
        for row in _jsonl(name):
            groups.setdefault(row["a"], set()).update((row["a"], row["b"]))
    for row in _jsonl("retrieval/queries.jsonl"):
        groups.setdefault(row["id"], set()).add(row["query"])
    baseline: list[str] = []
    held_out: list[str] = []
    for key, questions in sorted(groups.items()):
        side = int(hashlib.sha256((salt + key).encode()).hexdigest(), 16) % 5 < 3
        (baseline if side else held_out).extend(sorted(questions))
    return baseline, held_out


@cache
def _embed(texts: tuple[str, ...]) -> np.ndarray:
    from stratus.embeddings import get_embedder

    return get_embedder("all-MiniLM-L6-v2-int8").embed(list(texts))


def _measure(baseline: list[str], recent: list[str]) -> DriftReport:
    return measure_drift(_embed(tuple(baseline)), _embed(tuple(recent)), recent)


@pytest.mark.parametrize("salt", ["", "a", "b", "c"])
def test_held_out_support_questions_do_not_drift(salt: str) -> None:
    baseline, held_out = _support_split(salt)
    report = _measure(baseline, held_out)
    assert report.status == "ok"
    assert not report.drifted, report.to_json()


@pytest.mark.parametrize(("name", "field"), [("guard/benign_chat.jsonl", "text"),
                                             ("guard/toxicity_cases.jsonl", "text"),
                                             ("guard/injection_hard_negatives.jsonl", "text")])
def test_other_kinds_of_input_drift(name: str, field: str) -> None:
    baseline, _ = _support_split("")
    shifted = [row[field] for row in _jsonl(name)]
    report = _measure(baseline, shifted)
    assert report.drifted, report.to_json()
    assert report.far_share >= 2 * report.null_share
    assert report.centroid_shift > report.shift_threshold
    assert report.examples and {e.text for e in report.examples} <= {" ".join(t.split()) for t in shifted}


def test_a_fifth_of_off_topic_input_is_drift() -> None:
    baseline, held_out = _support_split("")
    chat = [row["text"] for row in _jsonl("guard/benign_chat.jsonl")]
    toxic = [row["text"] for row in _jsonl("guard/toxicity_cases.jsonl")]
    off_topic = list(np.random.default_rng(0).choice(chat + toxic, size=len(held_out) // 4, replace=False))
    report = _measure(baseline, held_out + off_topic)
    assert report.drifted, report.to_json()
    assert not report.centroid_shift > report.shift_threshold  # the far share, not the centroid, caught it
    assert sum(e.text in off_topic for e in report.examples) >= len(report.examples) - 1
