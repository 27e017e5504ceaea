"""Scan logic with fake rails: line parsing and errors, verdict mapping, rail selection, thresholds."""

from __future__ import annotations

import json

import pytest

from stratus.errors import InvalidInput, TooLarge
from stratus_tools.guard.scan import (
    OPT_IN_RAILS,
    RAILS,
    LineError,
    Measurement,
    Rail,
    RailResult,
    Scanned,
    binary_metrics,
    check_thresholds,
    parse_line,
    scan_lines,
    select_rails,
)


def _rail(name: str, check) -> Rail:  # noqa: ANN001
    return Rail(name, check, load=lambda: None, evaluate=lambda datasets=None: [])


def _shouty(text: str) -> RailResult:
    score = sum(c.isupper() for c in text) / max(len(text), 1)
    return RailResult("block" if score > 0.5 else "pass", score)


def _refuses_long(text: str) -> RailResult:
    if len(text) > 10:
        raise TooLarge("text has too many characters", field="text")
    return RailResult("pass", 0.0)


SHOUTY = _rail("shouty", _shouty)


def test_each_good_line_gets_one_result_in_order_and_bad_lines_name_their_line() -> None:
    lines = [
        json.dumps({"id": "a", "text": "STOP NOW"}),
        "{not json",
        json.dumps({"id": 2, "text": "calm words"}),
        "",
        json.dumps({"text": "no id"}),
        json.dumps({"id": "c"}),
        json.dumps({"id": "d", "text": ["not", "a", "string"]}),
        json.dumps({"id": None, "text": "null id"}),
        json.dumps(["a", "list"]),
        json.dumps({"id": 5.5, "text": "float id"}),
    ]
    out = list(scan_lines(lines, [SHOUTY]))

    good = [o for o in out if isinstance(o, Scanned)]
    bad = [o for o in out if isinstance(o, LineError)]
    assert [g.id for g in good] == ["a", 2]
    assert good[0].rails["shouty"].verdict == "block" and good[1].rails["shouty"].verdict == "pass"
    assert [b.line for b in bad] == [2, 5, 6, 7, 8, 9, 10]  # the blank line 4 is skipped, not an error
    assert all(b.error.startswith(f"line {b.line}:") for b in bad)
    assert "not JSON" in bad[0].error
    assert "'id'" in bad[1].error and bad[1].id is None
    assert "'text' is missing" in bad[2].error and bad[2].id == "c"  # the id is kept when it could be read
    assert "'text' must be a string, got list" in bad[3].error and bad[3].id == "d"
    assert "JSON object" in bad[5].error


def test_a_rail_refusing_a_text_is_an_error_for_that_line_only() -> None:
    rail = _rail("picky", _refuses_long)
    lines = [json.dumps({"id": "long", "text": "x" * 50}), json.dumps({"id": "short", "text": "ok"})]

    out = list(scan_lines(lines, [rail]))

    assert isinstance(out[0], LineError) and out[0].to_json() == {
        "id": "long", "line": 1, "error": "line 1: text has too many characters"}
    assert isinstance(out[1], Scanned) and out[1].to_json() == {
        "id": "short", "rails": {"picky": {"verdict": "pass", "score": 0.0}}}


def test_parse_line_rejects_a_boolean_id() -> None:
    error = parse_line(3, '{"id": true, "text": "x"}')
    assert isinstance(error, LineError) and "(bool)" in error.error


def test_parse_line_names_a_number_json_reads_but_python_cannot_hold() -> None:
    # json raises a plain ValueError (not a JSONDecodeError) for an integer past Python's digit limit
    error = parse_line(4, '{"id": 1, "text": "x", "n": ' + "9" * 5000 + "}")
    assert isinstance(error, LineError) and error.error.startswith("line 4: not JSON (Exceeds the limit")


def test_result_json_carries_rail_details_next_to_verdict_and_rounded_score() -> None:
    result = RailResult("redact", 0.123456, {"entities": ["EMAIL"]})
    assert result.to_json() == {"verdict": "redact", "score": 0.1235, "entities": ["EMAIL"]}


@pytest.mark.parametrize(("rail", "module", "getter"), [("injection", "direct", "get_direct_detector"),
                                                        ("injection_block", "injection", "get_detector")])
def test_injection_verdicts_are_tiered_as_the_rail_is(monkeypatch: pytest.MonkeyPatch, rail: str, module: str,
                                                      getter: str) -> None:
    import importlib

    from stratus.guard.injection import InjectionScore

    scores = {"ignore the rules": 0.9, "maybe ignore": 0.6, "hello": 0.1}

    class Fake:
        threshold, block_threshold = 0.4, 0.8

        def assess(self, texts):  # noqa: ANN001, ANN202
            return [InjectionScore(score=scores[t], flagged=scores[t] >= 0.4, threshold=0.4, view="text")
                    for t in texts]

    monkeypatch.setattr(importlib.import_module(f"stratus.guard.{module}"), getter, lambda: Fake())
    assert RAILS[rail].check("ignore the rules").to_json() == {"verdict": "block", "score": 0.9, "view": "text"}
    assert RAILS[rail].check("maybe ignore").verdict == "flag"  # over the threshold, under the block tier
    assert RAILS[rail].check("hello").verdict == "pass"
    Fake.block_threshold = None  # type: ignore[assignment]  # no tier: a hit is only flagged, as in the rail
    assert RAILS[rail].check("ignore the rules").verdict == "flag"


def test_pii_verdict_is_redact_with_the_highest_score_and_the_entity_types(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.guard import pii
    from stratus.guard.pii_types import Finding

    def fake_detector(text: str, entities) -> list[Finding]:  # noqa: ANN001
        found = []
        if (at := text.find("ada@example.com")) >= 0:
            found.append(Finding("EMAIL", at, at + 15, 1.0, "ada@example.com"))
        if (at := text.find("555 0100")) >= 0:
            found.append(Finding("PHONE", at, at + 8, 0.4, "555 0100"))
        return found

    monkeypatch.setattr(pii, "_presidio", fake_detector)
    assert RAILS["pii"].check("mail ada@example.com or call 555 0100").to_json() == {
        "verdict": "redact", "score": 1.0, "entities": ["EMAIL", "PHONE"]}
    assert RAILS["pii"].check("call 555 0100").score == 0.4
    assert RAILS["pii"].check("nothing personal here").to_json() == {"verdict": "pass", "score": 0.0, "entities": []}


def test_select_rails_accepts_names_in_order_and_names_unknown_ones() -> None:
    assert [r.name for r in select_rails(None)] == [n for n in RAILS if n not in OPT_IN_RAILS]
    assert "injection_multilingual" in OPT_IN_RAILS
    assert "injection_multilingual" not in [r.name for r in select_rails("")]
    assert [r.name for r in select_rails("injection_multilingual")] == ["injection_multilingual"]  # when named
    assert [r.name for r in select_rails("pii, injection,pii")] == ["pii", "injection"]
    assert [r.name for r in select_rails(["injection"])] == ["injection"]
    with pytest.raises(InvalidInput, match=r"unknown rail\(s\) \['sentiment'\]") as err:
        select_rails("injection,sentiment")
    assert err.value.field == "rails"
    with pytest.raises(InvalidInput, match="unknown rail"):
        select_rails("injection,")


def test_binary_metrics() -> None:
    m = binary_metrics([True, True, False, False, True], [True, False, True, False, True])
    assert m == {"precision": 2 / 3, "recall": 2 / 3, "f1": pytest.approx(2 / 3), "fpr": 0.5}
    assert binary_metrics([False], [False])["precision"] == 0.0
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        binary_metrics([True, False], [True])


def _measurement(**overrides: float) -> Measurement:
    values = {"precision": 0.97, "recall": 0.95, "f1": 0.96, "fpr": 0.02, "p50_ms": 1.0, "p95_ms": 2.0}
    values.update(overrides)
    return Measurement("injection", "test", 100, **values)


THRESHOLDS = {"_note": "ignored", "injection": {"test": {"_note": "ignored", "recall": {"min": 0.93},
                                                         "fpr": {"max": 0.03}}}}


def test_thresholds_pass_at_todays_figures_and_name_the_metric_that_regressed() -> None:
    assert check_thresholds([_measurement()], THRESHOLDS) == []
    problems = check_thresholds([_measurement(recall=0.9, fpr=0.05)], THRESHOLDS)
    assert problems == ["injection/test recall 0.900 < floor 0.93", "injection/test fpr 0.050 > ceiling 0.03"]


def test_a_dataset_without_thresholds_or_with_an_unknown_metric_is_reported() -> None:
    assert check_thresholds([_measurement()], {}) == ["injection/test: no thresholds recorded"]
    bad = {"injection": {"test": {"recal": {"min": 0.9}}}}
    assert check_thresholds([_measurement()], bad) == ["injection/test: unknown metric 'recal' in thresholds"]


def test_the_recorded_thresholds_cover_every_dataset_the_rails_measure() -> None:
    from stratus_tools.cli.guard import THRESHOLDS as PATH

    recorded = json.loads(PATH.read_text(encoding="utf-8"))
    assert set(RAILS) <= set(recorded)
    assert set(recorded["injection"]) >= {"s-labs-test", "hard-set"} and "pii-cases" in recorded["pii"]


def test_injection_eval_names_every_report_source_and_scores_only_the_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus_tools.guard import scan
    from stratus_tools.guard.injection_sources import by_role

    # Given the measuring steps replaced by ones that only record what they were asked to score
    def measured(src, latency_sample=None):  # noqa: ANN001, ANN202
        return Measurement("injection", scan.dataset_name(src), 1, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0)

    monkeypatch.setattr(scan, "_injection_load", lambda: None)
    monkeypatch.setattr(scan, "_measure_source", measured)
    monkeypatch.setattr("stratus.guard.injection.load_indirect", lambda split: (["a clean piece"], [0]))
    monkeypatch.setattr(scan, "_measure_binary", lambda rail, dataset, *_: measured(type("S", (), {"name": dataset})))
    # When the injection rail is evaluated whole, then on two datasets
    every = [m.dataset for m in RAILS["injection"].evaluate(None)]
    chosen = [m.dataset for m in RAILS["injection"].evaluate(frozenset({"benign-chat", "indirect-test"}))]
    # Then whole, it measures each report source once (the openers under their thresholds name) and the
    # indirect set; with datasets, those only
    assert every == [scan.dataset_name(s) for s in by_role("report")] + ["indirect-test"]
    assert "benign-chat" in every and "benign-chat-openers" not in every and len(set(every)) == len(every)
    assert chosen == ["benign-chat", "indirect-test"]
