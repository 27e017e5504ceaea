"""Which sentences the PII rail's NER runs on (stratus.guard.pii_names), on spaCy's English tokenizer."""

from __future__ import annotations

import pytest
import spacy

from stratus.guard import pii_names

_nlp = spacy.blank("en")


def _windows(text: str) -> list[str]:
    doc = _nlp(text)
    return [doc[start:end].text for start, end in pii_names.windows(doc)]


@pytest.mark.parametrize(("text", "name"), [
    ("Please ask Maria about the invoice.", "Maria"),
    ("Maria Garcia asked whether the budget was approved.", "Maria Garcia"),
    ("Maria's laptop is broken.", "Maria"),
    ("The report is attached.\nThanks,\nMaria", "Maria"),
    ("Dr. Priya Raman will review the scan.", "Priya Raman"),
    ("I moved from Chicago last year.", "Chicago"),
])
def test_a_sentence_that_can_hold_a_name_is_a_window(text: str, name: str) -> None:
    windows = _windows(text)
    assert any(name in w for w in windows)
    assert "The report is attached." not in windows


@pytest.mark.parametrize("text", [
    "Receipts must be submitted within thirty days through the finance portal.",
    "the server restarts every night at two.",
    "The expense policy applies to all employees. Meals are reimbursed up to the daily limit.",
    "Error 404 means the page was not found. I checked it twice.",
])
def test_sentences_whose_only_capital_opens_them_are_skipped(text: str) -> None:
    assert _windows(text) == []


def test_only_the_sentences_with_names_are_windows_and_neighbours_merge() -> None:
    text = ("The policy applies to everyone. Receipts go to finance. Questions go to Daniel Okafor. "
            "Ask Anna Kowalski too. Meals are reimbursed.")
    assert _windows(text) == ["Questions go to Daniel Okafor. Ask Anna Kowalski too."]


def test_lines_and_bullets_are_sentences_of_their_own() -> None:
    doc = _nlp("Agenda\n- budget review\n- call with Thomas Becker\nNotes follow")
    assert [doc[s:e].text for s, e in pii_names.sentences(doc)] == [
        "Agenda", "budget review", "call with Thomas Becker", "Notes follow"]
    assert [doc[s:e].text for s, e in pii_names.windows(doc)] == ["Agenda", "call with Thomas Becker"]
