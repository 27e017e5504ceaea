"""PII placeholder logic with a fake detector: no spaCy, no Presidio."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence

import pytest

from stratus.errors import InvalidInput, TooLarge
from stratus.guard.pii import MAX_CHARS, detect, once_per_text, redact, reredact, restore
from stratus.guard.pii_types import Finding
from stratus_tools.guard.pii_eval import Case, evaluate, load_cases

_FAKE = {
    "EMAIL": (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), 1.0),
    "PERSON": (re.compile(r"\b(?:Ada Lovelace|Alan Turing|Grace)\b"), 0.85),
    "PHONE": (re.compile(r"\+\d[\d ]{7,}\d"), 0.4),
    "US_SSN": (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), 0.85),
}


def fake(text: str, entities: Sequence[str]) -> list[Finding]:
    return [
        Finding(kind, m.start(), m.end(), score, m.group(0))
        for kind, (pattern, score) in _FAKE.items()
        if kind in entities
        for m in pattern.finditer(text)
    ]


def test_redact_numbers_placeholders_per_type_and_reuses_them_for_the_same_value() -> None:
    text = "Ada Lovelace (ada@example.com) wrote to Alan Turing; Ada Lovelace cc'd ADA@example.com."
    r = redact(text, detector=fake)
    assert r.text == "<PERSON_1> (<EMAIL_1>) wrote to <PERSON_2>; <PERSON_1> cc'd <EMAIL_1>."
    assert r.mapping == {"<PERSON_1>": "Ada Lovelace", "<EMAIL_1>": "ada@example.com", "<PERSON_2>": "Alan Turing"}
    assert restore(r.text, r.mapping) == text.replace("ADA@example.com", "ada@example.com")


def test_redact_continues_a_request_mapping_without_mutating_it() -> None:
    first = redact("Mail ada@example.com", detector=fake)
    second = redact("Also bob@example.org and ada@example.com", first.mapping, detector=fake)
    assert second.text == "Also <EMAIL_2> and <EMAIL_1>"
    assert first.mapping == {"<EMAIL_1>": "ada@example.com"}
    assert second.mapping == {"<EMAIL_1>": "ada@example.com", "<EMAIL_2>": "bob@example.org"}


def test_redact_sweeps_repeats_the_detector_missed() -> None:
    def once(text: str, entities: Sequence[str]) -> list[Finding]:
        return fake(text, entities)[:1]  # like NER catching a name once

    r = redact("Grace called. Later Grace emailed. Graceful is a word.", detector=once)
    assert r.text == "<PERSON_1> called. Later <PERSON_1> emailed. Graceful is a word."


def test_context_is_read_by_the_detector_but_only_the_text_is_redacted() -> None:
    # A stream's piece: the detector needs the words before it ("Ada" is a name in "to Ada Lovelace").
    def names_in_context(text: str, entities: Sequence[str]) -> list[Finding]:
        return [f for f in fake(text, entities) if f.type != "PERSON" or text.startswith("Write to")]

    r = redact(" Ada Lovelace, or ada@example.com", context="Write to", detector=names_in_context)
    assert r.text == " <PERSON_1>, or <EMAIL_1>"
    assert redact(" Ada Lovelace", detector=names_in_context).text == " Ada Lovelace"
    # A value that began in the context (already released) keeps only its part in the text.
    split = redact("11 123456 now", context="call +44 79", detector=fake)
    assert split.text == "<PHONE_1> now" and split.mapping == {"<PHONE_1>": "11 123456"}


def test_a_streamed_piece_of_lower_case_words_skips_the_detector_but_known_values_are_swept() -> None:
    calls: list[str] = []

    def counting(text: str, entities: Sequence[str]) -> list[Finding]:
        calls.append(text)
        return fake(text, entities)

    r = redact(" and grace said", {"<PERSON_1>": "grace"}, context="Then", detector=counting)
    assert r.text == " and <PERSON_1> said" and calls == []
    for piece in (" Ada Lovelace", " at 5", " ada@example.com", " fe::1"):  # a capital, a digit, an @, a colon
        redact(piece, context="Then", detector=counting)
    assert len(calls) == 4
    # A capital in any script counts: a name may begin with one ("Łukasz", "Émile", "Ángel").
    for piece in ("ukasz Ż", " Émile", " Ángel", " Ωμέγα"):
        redact(piece, context="I met", detector=counting)
    assert len(calls) == 8


def test_overlaps_resolve_to_the_higher_score() -> None:
    def both(text: str, entities: Sequence[str]) -> list[Finding]:
        return [Finding("PHONE", 4, 15, 0.4, text[4:15]), Finding("US_SSN", 4, 15, 0.85, text[4:15])]

    assert [f.type for f in detect("SSN 536-22-1847", detector=both)] == ["US_SSN"]


def test_min_score_and_entity_filter() -> None:
    text = "Ada Lovelace at +44 7911 123456"
    assert [f.type for f in detect(text, detector=fake)] == ["PERSON", "PHONE"]
    assert [f.type for f in detect(text, min_score=0.5, detector=fake)] == ["PERSON"]
    assert [f.type for f in detect(text, ["PHONE"], detector=fake)] == ["PHONE"]


def test_reredact_masks_known_originals_and_new_pii_and_keeps_placeholders() -> None:
    request = redact("Write to ada@example.com", detector=fake)
    answer = "I wrote to <EMAIL_1>; the file says ada@example.com and Alan Turing."
    out = reredact(answer, request.mapping, detector=fake)
    assert out.text == "I wrote to <EMAIL_1>; the file says <EMAIL_1> and <PERSON_1>."
    # Restoring with the request's own mapping gives back only what the caller sent.
    expected = "I wrote to ada@example.com; the file says ada@example.com and <PERSON_1>."
    assert restore(out.text, request.mapping) == expected
    assert restore(out.text, out.mapping).endswith("and Alan Turing.")


def test_reredact_catches_originals_the_detector_would_miss() -> None:
    mapping = {"<PERSON_1>": "Zed Quill"}
    out = reredact("Zed Quill approved it.", mapping, detector=lambda text, entities: [])
    assert out.text == "<PERSON_1> approved it." and out.mapping == mapping


def test_restore_is_one_pass_and_leaves_unknown_placeholders() -> None:
    mapping = {"<PERSON_1>": "<EMAIL_1>", "<EMAIL_1>": "ada@example.com"}
    assert restore("<PERSON_1> <EMAIL_1> <PHONE_9>", mapping) == "<EMAIL_1> ada@example.com <PHONE_9>"


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        detect("x", ["EMAIL", "SHOE_SIZE"], detector=fake)
    assert err.value.field == "entities" and "SHOE_SIZE" in err.value.message
    with pytest.raises(InvalidInput) as err:
        detect(b"bytes", detector=fake)  # type: ignore[arg-type]
    assert err.value.field == "text"
    with pytest.raises(TooLarge):
        detect("a" * (MAX_CHARS + 1), detector=fake)
    with pytest.raises(InvalidInput) as err:
        redact("x", {"EMAIL1": "a@b.c"}, detector=fake)
    assert err.value.field == "mapping"


def test_empty_text_never_calls_the_detector() -> None:
    def explode(text: str, entities: Sequence[str]) -> list[Finding]:
        raise AssertionError("detector called")

    assert detect("   ", detector=explode) == [] and redact("", detector=explode).text == ""
    assert detect("Ada Lovelace", [], detector=explode) == []


def test_importing_the_rail_loads_no_nlp_stack() -> None:
    heavy = "{'spacy', 'presidio_analyzer', 'tldextract'}"
    code = f"import sys, stratus.guard.pii; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_eval_scores_overlap_matches_per_type(tmp_path) -> None:
    cases = [
        Case("a", "Dr. Ada Lovelace", (("PERSON", 4, 16),)),
        Case("b", "Order 42", ()),
    ]

    def spans(text: str) -> list[Finding]:
        return [Finding("PERSON", 0, 16, 0.9, text)] if text.startswith("Dr") else [Finding("PHONE", 6, 8, 0.4, "42")]

    report = evaluate(cases, spans)
    assert (report.per_type["PERSON"].tp, report.per_type["PHONE"].fp) == (1, 1)
    assert report.negatives_flagged == ["b"] and report.false_positive_rate == 1.0
    bad = tmp_path / "cases.jsonl"
    good = '{"id": 1, "text": "hi", "entities": []}'
    wrong = '{"id": 2, "text": "hi", "entities": [{"type": "EMAIL", "value": "x@y.z"}]}'
    bad.write_text(f"{good}\n{wrong}\n")
    with pytest.raises(InvalidInput, match=r"cases.jsonl:2: .*does not occur"):
        load_cases(bad)


def test_once_per_text_detects_each_text_once_and_redacts_as_the_detector_does() -> None:
    # Given a detector that counts the texts it reads, remembered for one request
    read: list[str] = []

    def counting(text: str, entities: Sequence[str]) -> list[Finding]:
        read.append(text)
        return fake(text, entities)

    once = once_per_text(counting)
    text = "I am Ada Lovelace, ada@example.com."
    # When the same text is redacted twice (a message, then the query repeating it) and another text once
    first = redact(text, detector=once)
    again = redact(text, first.mapping, detector=once)
    other = redact("Grace wrote.", again.mapping, detector=once)
    # Then each text was read once, and the results are what the detector itself gives
    assert read == [text, "Grace wrote."]
    assert again.text == first.text == redact(text, detector=fake).text == "I am <PERSON_1>, <EMAIL_1>."
    assert other.text == "<PERSON_2> wrote."
    # and a caller changing the findings it got changes nothing remembered
    once(text, ("EMAIL",)).clear()
    assert [f.type for f in once(text, ("EMAIL",))] == ["EMAIL"]
    # and the entity list is part of what is remembered
    assert [f.type for f in once(text, ("PERSON",))] == ["PERSON"]
