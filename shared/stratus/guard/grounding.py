"""Groundedness: is each sentence of an answer supported by the passages it cites?

Support of an answer sentence by a passage sentence is the offline provider's relevance score
(stratus.llm.extractive: MiniLM cosine mixed with the IDF-weighted share of the answer sentence's content
words the passage sentence contains), with the answer sentence in the question's place. A sentence's score
is its best support among the sentences of the passages it cites ([n] markers), or of all passages when it
cites none. Two checks for what that similarity cannot see, both of which can only lower a score:
- numbers: a figure in the answer that no candidate passage contains ("90 days" where the document says 30)
  is an invented fact, however similar the rest of the sentence is; the score is scaled by the share of the
  answer's numbers found;
- polarity: when the best supporting sentence and the answer sentence disagree on negation ("supports" vs
  "does not support") the score is scaled by POLARITY_PENALTY.

The answer's score is the MINIMUM over its claim sentences, not the mean: one invented sentence makes an
answer unsupported however well grounded the rest is, and a mean would let long answers hide it. The mean
is reported alongside for traces. Sentences with no content words ("Yes, it is.") are not claims and not scored.
The threshold was chosen on the tune half of evals/guard/groundedness_cases.jsonl (see docs/guard.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stratus.embeddings import Embedder, get_embedder
from stratus.llm import extractive
from stratus.llm.types import ContextPassage

EMBEDDING_MODEL = "all-MiniLM-L6-v2-int8"  # the scorer's weights were calibrated with this model's vectors
# Chosen on the tune split (midpoint of the widest accuracy-maximising interval); held-out figures are
# floored in tests/integration/test_guard_groundedness.py.
SUPPORT_THRESHOLD = 0.498
POLARITY_PENALTY = 0.7
CASES = Path(__file__).resolve().parents[3] / "evals" / "guard" / "groundedness_cases.jsonl"

# Same marker grammar as stratus.citations: [3], [1, 2], [1][2], [1-3].
_MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*[-–,]\s*\d{1,3})*)\]")
# "... regions. [2] Next" cites the sentence before it: move such markers in front of the punctuation.
_TRAILING_MARKERS = re.compile(r"([.!?])((?:\s*\[\d{1,3}(?:\s*[-–,]\s*\d{1,3})*\])+)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_NEGATIONS = frozenset("not no never cannot can't don't doesn't isn't aren't won't wasn't weren't shouldn't "
                       "mustn't didn't hasn't haven't without neither nor none nothing".split())


@dataclass(frozen=True)
class SentenceSupport:
    text: str  # the answer sentence, markers removed
    cited: tuple[int, ...]  # its [n] markers; empty: checked against every passage
    score: float  # 0..1 after the number and polarity checks
    supported: bool
    evidence_passage: int | None  # the [n] of the best supporting passage
    evidence: str | None  # its best supporting sentence
    missing_numbers: tuple[str, ...]  # figures in the sentence that no candidate passage contains
    unknown_citations: tuple[int, ...]  # markers that name no passage (these cannot support anything)


@dataclass(frozen=True)
class Grounding:
    score: float  # min over claim sentences (1.0 when the answer makes no claim)
    mean: float
    threshold: float
    sentences: list[SentenceSupport]

    @property
    def supported(self) -> bool:
        return all(s.supported for s in self.sentences)

    @property
    def unsupported(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if not s.supported]


def parse_markers(sentence: str) -> tuple[str, tuple[int, ...]]:
    """The sentence without its [n] markers, and the passage numbers they name (in order, no repeats)."""
    numbers: dict[int, None] = {}
    for match in _MARKER.finditer(sentence):
        for part in re.split(r"\s*,\s*", match.group(1)):
            bounds = re.split(r"\s*[-–]\s*", part)
            low, high = int(bounds[0]), int(bounds[-1])
            if high - low <= 20:  # "[1-300]" is not a citation
                numbers.update(dict.fromkeys(range(low, high + 1)))
    text = _MARKER.sub("", sentence)
    text = re.sub(r"\s+([.!?,;:])", r"\1", text).strip()
    return text, tuple(numbers)


def answer_sentences(answer: str) -> list[str]:
    """The answer's sentences with their markers still attached (markers after the full stop move before it)."""
    return extractive.split_sentences(_TRAILING_MARKERS.sub(r"\2\1", answer))


def numbers_in(text: str, *, claimed: bool = False) -> set[str]:
    """Figures in `text`, normalised ("1,000" -> "1000"; "three" -> "3"). In a `claimed` (answer) sentence
    "one" is not taken for a figure: it is more often a pronoun ("the free one") than a quantity."""
    found = {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}
    words = _WORD.findall(text.lower())
    found |= {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS and not (claimed and w == "one")}
    return found


def _negated(text: str) -> bool:
    words = _WORD.findall(text.lower().replace("’", "'"))
    return any(w in _NEGATIONS or w.endswith("n't") for w in words)


def groundedness(answer: str, passages: Sequence[ContextPassage], *, embedder: Embedder | None = None,
                 threshold: float = SUPPORT_THRESHOLD) -> Grounding:
    """Score every claim sentence of `answer` against the passages it cites (see the module docstring)."""
    embedder = embedder or get_embedder(EMBEDDING_MODEL)
    by_number = {p.number: p for p in passages}
    units = [(p.number, s) for p in passages for s in extractive.split_sentences(p.text)]
    claims = []
    for raw in answer_sentences(answer):
        text, cited = parse_markers(raw)
        if extractive.content_terms(text):
            claims.append((text, cited))
    if not claims:
        return Grounding(1.0, 1.0, threshold, [])
    unit_terms = [extractive.content_terms(s) for _, s in units]
    plans = []
    for text, cited in claims:
        known = tuple(n for n in cited if n in by_number)
        unknown = tuple(n for n in cited if n not in by_number)
        allowed = set(known) if cited else set(by_number)
        candidates = [i for i, (n, _) in enumerate(units) if n in allowed]
        evidence_texts = [by_number[n].text for n in allowed]
        fast = _entailed(text, cited, unknown, candidates, units, unit_terms, evidence_texts, threshold)
        plans.append((text, cited, known, unknown, candidates, evidence_texts, fast))
    # Only sentences the words alone cannot settle are embedded, with only the passage sentences they
    # may be supported by: an answer that quotes its passages costs no embedding at all.
    slow = [plan for plan in plans if plan[-1] is None]
    unit_vectors: np.ndarray | None = None
    claim_vectors: dict[str, np.ndarray] = {}
    if slow:
        needed = sorted({i for plan in slow for i in plan[4]})
        unit_vectors = np.zeros((len(units), embedder.dimensions), dtype=np.float32)
        if needed:
            unit_vectors[needed] = extractive.sentence_vectors.embed(embedder, [units[i][1] for i in needed])
        texts = [plan[0] for plan in slow]
        claim_vectors = dict(zip(texts, extractive.sentence_vectors.embed(embedder, texts), strict=True))
    results = [fast if fast is not None else
               _support(text, cited, known, unknown, claim_vectors[text], candidates, units, unit_vectors,
                        unit_terms, evidence_texts, threshold)
               for text, cited, known, unknown, candidates, evidence_texts, fast in plans]
    scores = [r.score for r in results]
    return Grounding(min(scores), float(np.mean(scores)), threshold, results)


def _entailed(text: str, cited: tuple[int, ...], unknown: tuple[int, ...], candidates: list[int],
              units: list[tuple[int, str]], unit_terms: list[set[str]],
              evidence_texts: list[str], threshold: float) -> SentenceSupport | None:
    """A sentence whose every content word is in one candidate passage sentence, with the same polarity
    and no missing figure, is supported whatever its embedding says when the threshold is at most the
    lexical half's weight (0.5 of the score; the default threshold is 0.498). It scores 1.0 without being
    embedded. None: the full score is needed (a stricter tenant threshold always takes it)."""
    if not candidates or threshold > 1.0 - extractive.SEMANTIC_WEIGHT:
        return None
    lexical = extractive.lexical_scores(extractive.content_terms(text), unit_terms)[candidates]
    best = int(np.argmax(lexical))
    if lexical[best] < 1.0 - 1e-6:
        return None
    number, evidence = units[candidates[best]]
    wanted = numbers_in(text, claimed=True)
    if wanted and wanted - set().union(*(numbers_in(t) for t in evidence_texts)):
        return None
    if _negated(text) != _negated(evidence):
        return None
    return SentenceSupport(text, cited, 1.0, True, number, evidence, (), unknown)


def _support(text: str, cited: tuple[int, ...], known: tuple[int, ...], unknown: tuple[int, ...],
             vector: np.ndarray, candidates: list[int], units: list[tuple[int, str]],
             unit_vectors: np.ndarray | None, unit_terms: list[set[str]], evidence_texts: list[str],
             threshold: float) -> SentenceSupport:
    if not candidates or unit_vectors is None:  # cites only passages that do not exist, or no context at all
        return SentenceSupport(text, cited, 0.0, False, None, None, (), unknown)
    semantic = unit_vectors[candidates] @ vector
    # IDF over every context sentence (as the offline provider does): a word the whole context shares
    # (the product's name) says less about support than a rare one.
    lexical = extractive.lexical_scores(extractive.content_terms(text), unit_terms)[candidates]
    scores = extractive.SEMANTIC_WEIGHT * semantic + (1.0 - extractive.SEMANTIC_WEIGHT) * lexical
    best = int(np.argmax(scores))
    number, evidence = units[candidates[best]]
    score = float(np.clip(scores[best], 0.0, 1.0))
    wanted = numbers_in(text, claimed=True)
    available = set().union(*(numbers_in(t) for t in evidence_texts)) if wanted else set()
    missing = tuple(sorted(wanted - available))
    if wanted:
        score *= 1.0 - len(missing) / len(wanted)
    if _negated(text) != _negated(evidence):
        score *= POLARITY_PENALTY
    return SentenceSupport(text, cited, score, score >= threshold, number, evidence, missing, unknown)


# ---- the labelled set ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    split: str  # "tune" or "test"; both cases of a topic share a split
    kind: str  # paraphrase | contradiction | number | invented
    passage: str
    sentence: str
    supported: bool


def load_cases(path: Path = CASES, split: str | None = None) -> list[Case]:
    cases = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            case = Case(row["id"], row["split"], row["kind"], row["passage"], row["sentence"], bool(row["supported"]))
        except (ValueError, KeyError) as err:
            raise ValueError(f"{path.name} line {line_no}: {err}") from err
        if split is None or case.split == split:
            cases.append(case)
    return cases


def score_case(case: Case, embedder: Embedder | None = None) -> float:
    """The sentence's score against its single passage, cited as [1]."""
    passage = ContextPassage(number=1, chunk_id=0, document_id="eval", document_version=1, source_key="eval",
                             text=case.passage)
    return groundedness(f"{case.sentence} [1]", [passage], embedder=embedder).score


def choose_threshold(scores: Sequence[float], supported: Sequence[bool]) -> float:
    """Midpoint of the widest interval of thresholds that maximises accuracy on (scores, labels)."""
    cuts = sorted(set(scores))
    edges = [0.0] + [(a + b) / 2 for a, b in zip(cuts, cuts[1:], strict=False)] + [1.0]
    accuracy = [sum((s >= t) == y for s, y in zip(scores, supported, strict=True)) for t in edges]
    top = max(accuracy)
    best, best_width = edges[0], -1.0
    i = 0
    while i < len(edges):  # runs of consecutive edges with top accuracy: take the widest run's middle
        if accuracy[i] != top:
            i += 1
            continue
        j = i
        while j + 1 < len(edges) and accuracy[j + 1] == top:
            j += 1
        if edges[j] - edges[i] > best_width:
            best, best_width = (edges[i] + edges[j]) / 2, edges[j] - edges[i]
        i = j + 1
    return round(best, 3)
