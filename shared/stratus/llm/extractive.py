"""Extractive answering: pick the context sentences that best answer a question, with their citations.

This is the offline provider's whole "model". It does not generate language: every sentence of an answer
is copied from a retrieved passage and ends with that passage's [n] marker, so an answer can only be as
right as the documents. A question the passages do not support gets no sentences at all (`supported` is
False) rather than the least-bad ones.

Relevance of a sentence to the question mixes two signals:
- semantic: cosine of MiniLM embeddings (vectors are L2-normalised, so a dot product), which catches
  paraphrases ("slow down" ~ "rate limit");
- lexical: the IDF-weighted share of the question's content words the sentence contains, which catches
  exact identifiers and error codes (AUTH_KEY_EXPIRED) that sentence embeddings blur.
The weights and the "cannot answer" threshold were chosen on a labelled set (evals/offline/, see
docs/providers.md), not guessed.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stratus.embeddings import Embedder

# Score = SEMANTIC_WEIGHT * cosine + (1 - SEMANTIC_WEIGHT) * lexical coverage, both in [0, 1] in practice.
# Chosen with the threshold on the tune split of evals/offline/cases.jsonl (grid 0.3..1.0).
SEMANTIC_WEIGHT = 0.5
# A question is answerable when its best sentence scores at least this. Chosen on the tune split of
# evals/offline/cases.jsonl as the midpoint of the widest accuracy-maximising interval; accuracy on the
# held-out test split is recorded in evals/offline/results.json and floored in the unit tests.
ANSWER_THRESHOLD = 0.339
# Besides the best sentence, keep only sentences close to it: a weaker sentence dilutes the answer.
RELATIVE_CUTOFF = 0.8
MAX_SENTENCES = 4
# Two sentences this similar say the same thing (overlapping chunks repeat text): keep the first.
DUPLICATE_COSINE = 0.95
_EMBED_BATCH = 32  # sentences are embedded in length-sorted batches so short ones are not padded long
# Embedding every context sentence is the whole cost (about 3,000 tokens/s on two cores), and the same
# popular chunks come back question after question, so sentence vectors are kept per process.
_CACHED_VECTORS = 8192  # x 384 float32 = 12 MiB

_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[`*]?[A-Z0-9])")
_LINE_ITEM = re.compile(r"\n\s*(?=[-*+•]\s|\d+[.)]\s)")  # list items are sentences of their own
_SPACES = re.compile(r"\s+")
_HEADING_WORDS = 8
_BULLET = re.compile(r"^[-*+•]\s+")
_WORD = re.compile(r"[a-z0-9][a-z0-9_]*(?:[-'][a-z0-9_]+)*")
_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing done down during each either else ever every few for from
further get gets got had has have having he her here hers him his how i if in into is it its itself just
let me might more most must my no nor not now of off on once only or other our ours out over own per
please same shall she should so some such than that the their theirs them then there these they this
those through to too under until up upon us very was we were what when where whether which while who whom
whose why will with within without would yes yet you your yours
""".split())


@dataclass(frozen=True)
class Sentence:
    number: int  # the passage's citation marker
    passage: int  # index of the passage in the request's context
    position: int  # index of the sentence within its passage
    text: str


@dataclass(frozen=True)
class ScoredSentence:
    sentence: Sentence
    semantic: float
    lexical: float
    score: float


@dataclass(frozen=True)
class Extraction:
    """The ranked sentences (best first) and whether the best one clears ANSWER_THRESHOLD."""

    ranked: list[ScoredSentence]
    best_score: float
    supported: bool


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage: paragraphs and list items first, then sentence ends followed by a capital
    (so "e.g. foo" and "v1.2" stay whole). Heading lines (short, unpunctuated, e.g. "Unsupported files" in
    plain text) are dropped: they are labels, not statements an answer can quote. Whitespace is collapsed."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        lines = [line for line in para.split("\n") if not _is_heading(line)]
        for item in _LINE_ITEM.split("\n".join(lines)):
            item = _BULLET.sub("", _SPACES.sub(" ", item).strip())
            out.extend(s.strip() for s in _SPLIT.split(item) if s.strip())
    return out


def _is_heading(line: str) -> bool:
    line = line.strip()
    return (0 < len(line.split()) <= _HEADING_WORDS and line[:1].isupper()
            and not re.search(r"[.!?:;,)`\]]$", line) and not _LINE_ITEM.match("\n" + line))


def _stem(word: str) -> str:
    """A deliberately small suffix stripper (rotate/rotating/rotated -> rotat, retries/retry -> retry)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> set[str]:
    """Stemmed content words; identifiers keep their underscores, dotted names split into parts, and a
    hyphenated word counts whole and by its parts (`Parcelo-Signature` matches "signature")."""
    terms = set()
    for word in _WORD.findall(text.lower().replace(".", " ")):
        for term in (word, *word.split("-")) if "-" in word else (word,):
            if term not in _STOPWORDS and (len(term) > 1 or term.isdigit()):
                terms.add(_stem(term))
    return terms


def lexical_scores(question_terms: set[str], sentence_terms: Sequence[set[str]]) -> np.ndarray:
    """Share of the question's IDF mass each sentence covers. IDF is over the context's own sentences:
    a word every sentence has (the topic of the document) tells sentences apart less than a rare one."""
    n = len(sentence_terms)
    if not question_terms or n == 0:
        return np.zeros(n, dtype=np.float32)
    idf = {t: math.log(1.0 + n / (1 + sum(t in s for s in sentence_terms))) for t in question_terms}
    total = sum(idf.values())
    return np.array([sum(idf[t] for t in question_terms & s) / total for s in sentence_terms], dtype=np.float32)


class _VectorCache:
    """A bounded LRU of sentence vectors, keyed by (model, text)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, embedder: Embedder, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._items.get((embedder.model_name, text))
                if hit is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._items.move_to_end((embedder.model_name, text))
                    out[i] = hit
        todo = sorted(missing, key=len)  # length-sorted batches: short sentences are not padded long
        for start in range(0, len(todo), _EMBED_BATCH):
            batch = todo[start:start + _EMBED_BATCH]
            vectors = embedder.embed(batch)
            with self._lock:
                for text, vector in zip(batch, vectors, strict=True):
                    out[missing[text]] = vector
                    self._items[(embedder.model_name, text)] = vector
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return out

    def seed(self, model_name: str, vectors: dict[str, np.ndarray]) -> None:
        """Vectors computed elsewhere (stored at ingestion) for texts of this model."""
        with self._lock:
            for text, vector in vectors.items():
                self._items[(model_name, text)] = np.asarray(vector, dtype=np.float32)
                self._items.move_to_end((model_name, text))
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


sentence_vectors = _VectorCache(_CACHED_VECTORS)


def extract(question: str, passages: Sequence[tuple[int, str]], embedder: Embedder) -> Extraction:
    """Score every sentence of `passages` ((citation number, text) pairs) against `question`."""
    sentences = [
        Sentence(number, p, pos, text)
        for p, (number, body) in enumerate(passages)
        for pos, text in enumerate(split_sentences(body))
    ]
    if not sentences or not question.strip():
        return Extraction([], 0.0, False)
    vectors = np.vstack([embedder.embed([question]), sentence_vectors.embed(embedder, [s.text for s in sentences])])
    semantic = vectors[1:] @ vectors[0]
    lexical = lexical_scores(content_terms(question), [content_terms(s.text) for s in sentences])
    scores = SEMANTIC_WEIGHT * semantic + (1.0 - SEMANTIC_WEIGHT) * lexical
    # Ties are broken by passage then position, so the same input always ranks the same way.
    order = sorted(range(len(sentences)), key=lambda i: (-round(float(scores[i]), 6), i))
    ranked: list[ScoredSentence] = []
    kept_vectors: list[np.ndarray] = []
    seen: set[str] = set()
    for i in order:
        key = _SPACES.sub(" ", sentences[i].text.lower())
        if key in seen or any(float(vectors[i + 1] @ v) >= DUPLICATE_COSINE for v in kept_vectors):
            continue
        seen.add(key)
        kept_vectors.append(vectors[i + 1])
        ranked.append(ScoredSentence(sentences[i], float(semantic[i]), float(lexical[i]), float(scores[i])))
    best = ranked[0].score
    return Extraction(ranked, best, best >= ANSWER_THRESHOLD)


def select(extraction: Extraction) -> list[ScoredSentence]:
    """The answer's sentences, in reading order: passages in order of their best sentence, sentences of a
    passage in document order (so a passage's sentences read as written and the strongest passage leads)."""
    if not extraction.supported:
        return []
    floor = max(ANSWER_THRESHOLD, RELATIVE_CUTOFF * extraction.best_score)
    chosen = [s for s in extraction.ranked[:MAX_SENTENCES] if s.score >= floor]
    lead: dict[int, int] = {}
    for s in chosen:  # chosen is best-first, so the first sentence seen of a passage is its best
        lead.setdefault(s.sentence.passage, len(lead))
    return sorted(chosen, key=lambda s: (lead[s.sentence.passage], s.sentence.position))


def cite(text: str, number: int) -> str:
    """`text` with its [n] marker placed before the closing punctuation ("... regions [2].")."""
    m = re.search(r"([.!?:;]+[\"')\]]*)$", text)
    if m:
        return f"{text[: m.start()].rstrip()} [{number}]{m.group(1)}"
    return f"{text} [{number}]"
