"""Gold-set evaluation: the case format, the scoring rules, aggregates and floors, and the shipped sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratus.llm.providers.offline import NO_ANSWER
from stratus_tools.evals.gold import (
    GOLD_DIR,
    KINDS,
    THRESHOLDS,
    GoldCase,
    GoldSetError,
    Outcome,
    SuiteResult,
    aggregate,
    available_suites,
    check_thresholds,
    compare_versions,
    corpus_sources,
    declines,
    is_refusal,
    load_suite,
    load_thresholds,
    score_case,
)

ANSWERABLE = GoldCase("a1", "How much is Team?", "answerable", ("pricing.html",), False, ("149 euros",))
OUT_OF_SCOPE = GoldCase("o1", "Capital of France?", "out_of_scope", refusal=True)


def _write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# ---- scoring ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    NO_ANSWER,
    "I cannot answer this from the provided documents.",
    "The passages don't mention a mobile app.",
    "Sorry, I'm unable to answer that question.",
    "There is no information about PayPal in the documents.",
])
def test_declining_phrasings_are_recognised(text: str) -> None:
    assert declines(text)


@pytest.mark.parametrize("text", [
    "The Team plan costs 149 euros per month [1].",
    "Paris is the capital of France.",
    "Webhooks are available on the Team and Enterprise plans [2].",
])
def test_answers_are_not_declines(text: str) -> None:
    assert not declines(text)


def test_a_refusal_is_a_block_or_a_declining_answer_without_citations() -> None:
    assert is_refusal(Outcome(blocked="injection"))
    assert is_refusal(Outcome(text=NO_ANSWER))
    assert not is_refusal(Outcome(text="Paris is the capital of France."))  # answered from outside the documents
    assert not is_refusal(Outcome(text="I cannot answer fully, but [1] says 29 euros.", cited=((4, "pricing.html"),),
                                  retrieved=(4,)))


def test_an_answerable_case_passes_with_its_source_cited_and_the_phrase_present() -> None:
    outcome = Outcome("The Team plan costs 149 Euros per month [1].", ((7, "pricing.html"), (9, "webhooks.md")), (7, 9))

    result = score_case(ANSWERABLE, outcome)

    assert result.passed and result.problems == []
    assert result.scores == {"citations": True, "refusal": True, "must_include": True}
    assert result.cited == ["pricing.html", "webhooks.md"]


def test_an_answerable_case_fails_on_a_missing_source_a_missing_phrase_or_a_refusal() -> None:
    wrong_source = score_case(ANSWERABLE, Outcome("It costs 149 euros [1].", ((3, "webhooks.md"),), (3,)))
    no_phrase = score_case(ANSWERABLE, Outcome("It is billed monthly [1].", ((7, "pricing.html"),), (7,)))
    refused = score_case(ANSWERABLE, Outcome(NO_ANSWER, (), (7,)))

    assert wrong_source.scores == {"citations": False, "refusal": True, "must_include": True}
    assert "not cited: pricing.html" in wrong_source.problems
    assert no_phrase.scores["must_include"] is False and "answer lacks: '149 euros'" in no_phrase.problems
    assert refused.scores == {"citations": False, "refusal": False, "must_include": False}
    assert "refused an answerable question" in refused.problems
    assert not (wrong_source.passed or no_phrase.passed or refused.passed)


def test_citing_a_passage_that_was_not_retrieved_fails_the_citation_match() -> None:
    result = score_case(ANSWERABLE, Outcome("149 euros [1] [2].", ((7, "pricing.html"), (99, "secret.md")), (7,)))

    assert result.scores["citations"] is False and not result.passed
    assert "cited passages that were not retrieved: secret.md" in result.problems


def test_a_refusal_case_passes_when_blocked_or_declined_and_fails_when_answered() -> None:
    blocked = score_case(OUT_OF_SCOPE, Outcome(blocked="injection"))
    declined = score_case(OUT_OF_SCOPE, Outcome(NO_ANSWER))
    answered = score_case(OUT_OF_SCOPE, Outcome("It replaces the old policy [1].", ((2, "policy.md"),), (2,)))

    assert blocked.passed and blocked.refused and blocked.blocked == "injection"
    assert declined.passed and declined.scores == {"citations": None, "refusal": True, "must_include": None}
    assert not answered.passed and answered.problems == ["answered instead of refusing"]


def test_a_workflow_failure_fails_every_metric_and_says_why() -> None:
    result = score_case(ANSWERABLE, Outcome(error="ProviderUnavailable: all deployments failed"))

    assert not result.passed and set(result.scores.values()) == {False}
    assert result.problems == ["workflow failed: ProviderUnavailable: all deployments failed"]


# ---- aggregates and floors ----------------------------------------------------------------------------


def test_aggregates_average_each_metric_over_the_cases_it_applies_to() -> None:
    results = [
        score_case(ANSWERABLE, Outcome("149 euros [1].", ((7, "pricing.html"),), (7,))),
        score_case(ANSWERABLE, Outcome("It is billed monthly [1].", ((7, "pricing.html"),), (7,))),
        score_case(OUT_OF_SCOPE, Outcome(NO_ANSWER)),
        score_case(OUT_OF_SCOPE, Outcome("Paris.")),
    ]

    agg = aggregate(results)

    assert agg["all"] == {"n": 4, "passed": 2, "pass_rate": 0.5, "citations": 1.0, "refusal": 0.75,
                          "must_include": 0.5}
    assert agg["out_of_scope"] == {"n": 2, "passed": 1, "pass_rate": 0.5, "citations": None, "refusal": 0.5,
                                   "must_include": None}
    assert list(agg) == ["all", "answerable", "out_of_scope"]


def test_a_candidate_that_loses_a_case_the_served_version_passes_is_a_regression() -> None:
    from dataclasses import replace

    def run(version: int, answers: list[str]) -> SuiteResult:
        cases = [replace(score_case(ANSWERABLE, Outcome(a, ((7, "pricing.html"),), (7,))), id=f"a-{i}")
                 for i, a in enumerate(answers)]
        cases.append(replace(score_case(OUT_OF_SCOPE, Outcome(NO_ANSWER)), id="o-1"))
        return SuiteResult("rag-answer", version, cases, aggregate(cases), 1.0)

    served = run(1, ["149 euros [1].", "149 euros [1].", "It is billed monthly [1]."])
    same = run(2, ["149 euros [1].", "It is billed monthly [1].", "149 euros [1]."])  # one lost, one gained
    worse = run(2, ["149 euros [1].", "It is billed monthly [1].", "It is billed monthly [1]."])

    assert compare_versions("rag-answer", served, same) == []
    problems = compare_versions("rag-answer", served, worse)
    assert "regression: rag-answer/answerable must_include 0.333 < 0.667 (v1, 1 case(s) fewer)" in problems
    assert "regression: rag-answer/all pass_rate 0.500 < 0.750 (v1, 1 case(s) fewer)" in problems
    assert problems[-1] == "passed on v1, fail on v2: a-1"
    assert not any("out_of_scope" in p or "citations" in p for p in problems)
    assert compare_versions("rag-answer", served, served) == []


def test_missed_floors_are_named_by_suite_group_and_metric() -> None:
    agg = {"all": {"pass_rate": 0.5, "citations": 0.9}, "injection": {"refusal": None}}
    floors = {"_note": "x", "all": {"pass_rate": {"min": 0.6}, "citations": {"min": 0.9}},
              "injection": {"refusal": {"min": 0.5}}}

    problems = check_thresholds("rag-answer", agg, floors)

    assert problems == ["regression: rag-answer/all pass_rate 0.500 < floor 0.6",
                        "regression: rag-answer/injection refusal not measured (no case applies)"]


def test_thresholds_files_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"s": {"all": {"recall": {"min": 0.5}}}}))
    with pytest.raises(GoldSetError, match=r"s\.all\.recall"):
        load_thresholds(path, "s")
    with pytest.raises(GoldSetError, match="no thresholds for suite 'other'"):
        load_thresholds(path, "other")


# ---- the case format ----------------------------------------------------------------------------------


def test_a_valid_suite_loads(tmp_path: Path) -> None:
    path = _write(tmp_path,
                  {"id": "a", "question": "Q?", "kind": "answerable", "expect": {"citations": ["x.md"]},
                   "must_include": ["y"]},
                  "",
                  {"id": "b", "question": "Q2?", "kind": "injection", "expect": {"refusal": True}})

    cases = load_suite(path, ["x.md"])

    assert cases == [GoldCase("a", "Q?", "answerable", ("x.md",), False, ("y",)),
                     GoldCase("b", "Q2?", "injection", (), True, ())]


@pytest.mark.parametrize(("row", "message"), [
    ("not json", r":1: invalid JSON"),
    ({"id": "a", "question": "", "kind": "answerable", "expect": {"refusal": True}}, "'question'"),
    ({"id": "a", "question": "Q", "kind": "rumour", "expect": {"refusal": True}}, "'kind' must be one of"),
    ({"id": "a", "question": "Q", "kind": "absent", "expect": {"refusal": False}}, "'expect' must be"),
    ({"id": "a", "question": "Q", "kind": "absent", "expect": {"citations": []}}, "'expect' must be"),
    ({"id": "a", "question": "Q", "kind": "answerable", "expect": {"citations": ["nope.md"]}}, "not in the corpus"),
    ({"id": "a", "question": "Q", "kind": "answerable", "expect": {"citations": ["x.md"]}, "must_include": "y"},
     "'must_include'"),
    ({"id": "a", "question": "Q", "kind": "absent", "expect": {"refusal": True}, "notes": "?"}, "unknown field"),
])
def test_bad_cases_are_refused_naming_the_line_and_field(tmp_path: Path, row: object, message: str) -> None:
    with pytest.raises(GoldSetError, match=message):
        load_suite(_write(tmp_path, row), ["x.md"])


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    row = {"id": "a", "question": "Q", "kind": "absent", "expect": {"refusal": True}}
    with pytest.raises(GoldSetError, match=r":2: duplicate case id 'a'"):
        load_suite(_write(tmp_path, row, row))


# ---- the shipped gold sets ----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", available_suites())
def test_shipped_suites_are_large_half_adversarial_and_true_to_their_corpus(suite: str) -> None:
    files = corpus_sources()
    cases = load_suite(GOLD_DIR / f"{suite}.jsonl", files)

    assert len(cases) >= 50
    assert sum(c.kind != "answerable" for c in cases) * 2 >= len(cases)
    assert {c.kind for c in cases} == set(KINDS)
    for case in cases:  # every required phrase is in one of the documents the case expects cited
        texts = " ".join(" ".join(files[s].read_text(encoding="utf-8").split()) for s in case.citations).lower()
        assert all(p.lower() in texts for p in case.must_include), case.id
        assert case.refusal == (case.kind in ("out_of_scope", "injection", "absent")), case.id
    assert load_thresholds(THRESHOLDS, suite)
