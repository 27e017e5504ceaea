"""The PII rail with the real offline analyzer (Presidio + en_core_web_sm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.guard.pii import detect, redact, reredact, restore
from stratus_tools.guard.pii_eval import evaluate, load_cases

CASES = Path(__file__).resolve().parents[2] / "evals" / "guard" / "pii_cases.jsonl"

# Floors recorded from the measured figures on our own set (see the report in pii_eval); a change
# that drops below them is a regression. Checksum-validated types must stay exact.
FLOORS = {"recall": 0.95, "precision": 0.85, "fpr": 0.20}
EXACT = ("CREDIT_CARD", "IBAN", "EMAIL", "US_SSN")


def types(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.text) for f in detect(text)]


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"],
)
def test_valid_cards_are_found(number: str) -> None:
    assert ("CREDIT_CARD", number) in types(f"Charge card {number} today.")


@pytest.mark.parametrize("number", ["4111 1111 1111 1112", "5500-0000-0000-0005", "378282246310006"])
def test_cards_failing_luhn_are_not(number: str) -> None:
    assert [t for t, _ in types(f"Charge card {number} today.")] == []


def test_iban_is_mod97_validated() -> None:
    assert types("Pay DE89 3704 0044 0532 0130 00 now") == [("IBAN", "DE89 3704 0044 0532 0130 00")]
    assert types("Pay DE89 3704 0044 0532 0130 01 now") == []
    assert types("Pay GB82WEST12345698765433 now") == []


def test_emails_phones_names_ssn_ip() -> None:
    found = types(
        "Maria Garcia (maria.garcia@example.com, +44 7911 123456) asked about SSN 536-22-1847 "
        "and a login from 203.0.113.77."
    )
    assert ("PERSON", "Maria Garcia") in found
    assert ("EMAIL", "maria.garcia@example.com") in found
    assert ("PHONE", "+44 7911 123456") in found
    assert ("US_SSN", "536-22-1847") in found
    assert ("IP_ADDRESS", "203.0.113.77") in found


def test_order_numbers_versions_and_dates_are_not_pii() -> None:
    assert types("Order #123-456-7890 shipped on 2024-03-05; upgrade 3.12.1 to 3.13.0.") == []


def test_email_validation_is_offline() -> None:
    # An unknown suffix fails validation from the bundled public suffix snapshot, without a fetch.
    assert types("write to a@b.notarealtld") == []
    assert types("write to a@b.co.uk") == [("EMAIL", "a@b.co.uk")]


def test_round_trip_through_a_model_answer() -> None:
    request = redact("I'm Sarah Connor, email sarah.connor@example.com. Where is my refund?")
    assert "Sarah Connor" not in request.text and "sarah.connor@example.com" not in request.text
    answer = "Dear <PERSON_1>, the refund went to <EMAIL_1>. Ask Thomas Becker at +1 415 555 0199."
    out = reredact(answer, request.mapping)
    assert "Thomas Becker" not in out.text and "+1 415 555 0199" not in out.text
    restored = restore(out.text, request.mapping)
    assert restored.startswith("Dear Sarah Connor, the refund went to sarah.connor@example.com.")
    assert "Thomas Becker" not in restored


def test_eval_set_stays_above_its_floors() -> None:
    report = evaluate(load_cases(CASES), lambda text: redact(text).findings)
    assert report.overall.recall >= FLOORS["recall"], report
    assert report.overall.precision >= FLOORS["precision"], report
    assert report.false_positive_rate <= FLOORS["fpr"], report
    for kind in EXACT:
        score = report.per_type[kind]
        assert (score.precision, score.recall) == (1.0, 1.0), score


# Name-dense text (a person or place in every sentence): the NER decides on every token here.
NAME_DENSE = (
    "Maria Lopez from the Denver office met Daniel Okafor on Tuesday. Anna Kowalski collects the receipts "
    "from the Berlin team, and Thomas Becker asked whether the trip to Lisbon counts as overhead. Kevin "
    "O'Brien in the London office tells Sarah Connor, who keeps the minutes. Li Wei joins from Singapore, "
    "and Fatima Zahra from the Casablanca office asked Leonardo da Vinci for a copy of the slides."
)


def test_ner_multiplies_through_numpy_and_finds_what_the_shipped_model_finds() -> None:
    # Given the analyzer's NER, built on numpy's ops (OpenBLAS), and the model as spaCy loads it (BLIS)
    import spacy

    from stratus.guard import pii_presidio

    ours = pii_presidio.analyzer().nlp_engine.nlp["en"]
    ner = ours.get_pipe("ner")
    # its token encoder and the precomputed hidden layer: the products a prediction makes through ops.gemm
    # (the output layer's weights go to the parser's own loop)
    for ref in ("tok2vec", "lower"):
        assert all(not node.ops.use_blis for node in ner.model.get_ref(ref).walk())
    shipped = spacy.load(pii_presidio.SPACY_MODEL)
    shipped_ner = shipped.get_pipe("ner")
    assert shipped_ner.model.ops.use_blis

    # When both NER components read the same tokenised texts (the whole pipeline's parser would set
    # sentence boundaries, which no entity crosses), Then they find the same entities
    texts = [NAME_DENSE, *(case.text for case in load_cases(CASES))]
    for text in texts:
        found = [(e.start_char, e.end_char, e.label_) for e in ner(ours.make_doc(text)).ents]
        expected = [(e.start_char, e.end_char, e.label_) for e in shipped_ner(shipped.make_doc(text)).ents]
        assert found == expected, text
    assert ("PERSON", "Leonardo da Vinci") in types(NAME_DENSE)


def test_context_enhancement_gives_presidios_own_scores() -> None:
    # Given our analyzer and Presidio's engine with its own context enhancer, on the same recognizers and NLP
    from presidio_analyzer import AnalyzerEngine

    from stratus.guard import pii_presidio

    ours = pii_presidio.analyzer()
    presidios = AnalyzerEngine(registry=ours.registry, nlp_engine=ours.nlp_engine, supported_languages=["en"])
    texts = [NAME_DENSE, "My phone number is 212 555 0199, Grace Kim.", *(case.text for case in load_cases(CASES))]

    def scored(engine: AnalyzerEngine, text: str) -> list[tuple[str, int, int, float]]:
        return sorted((r.entity_type, r.start, r.end, r.score) for r in engine.analyze(text=text, language="en"))

    # When both analyze the same texts, Then every result and score is the same
    for text in texts:
        assert scored(ours, text) == scored(presidios, text), text
    # and a context word still raises a score ("phone" beside a number the recognizer gives 0.4)
    assert ("PHONE_NUMBER", 19, 31) in [r[:3] for r in scored(ours, texts[1]) if r[3] > 0.4]


def test_detection_from_threads_matches_and_leaves_blas_as_it_was() -> None:
    # Given BLAS set to two threads before any detection (so a limit of one left behind would show)
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import ThreadpoolController, threadpool_limits

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in ThreadpoolController().info() if lib["user_api"] == "blas"}

    texts = [NAME_DENSE, "Call Grace Kim on +44 20 7946 0958.", "No names here at all."] * 4
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        # When texts are detected one after another, then by threads at once (NER limits BLAS to one
        # thread while it runs)
        sequential = [detect(text) for text in texts]
        after_sequential = blas_threads()
        with ThreadPoolExecutor(6) as pool:
            concurrent = list(pool.map(detect, texts))
        # Then the findings are the same and the process's BLAS setting is restored after each
        assert concurrent == sequential
        assert after_sequential == blas_threads() == {2}
