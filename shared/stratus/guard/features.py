"""Text features for the guard classifiers: hashed word and character n-grams with TF-IDF weights.

Training (scripts/train_injection.py) and scoring use these same functions, so a model never sees
features built differently from the ones it learned on. Everything here is stdlib + numpy: no
vocabulary file, no scikit-learn at run time.

Why hashing: the vocabulary of char n-grams is large and open-ended (obfuscations such as "1gn0re" or
"i g n o r e" create new ones). Hashing into a fixed number of buckets keeps the artifact small and
bounded; crc32 is used because Python's own `hash()` is salted per process and would not reproduce.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Zero-width and bidi control characters hide words from a reader and from tokenizers alike.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u00ad"))
# Digit/symbol substitutions seen in leetspeak. Applied only inside tokens that also hold letters,
# so plain numbers ("version 3", "1024 tokens") keep their meaning.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_WORD = re.compile(r"[a-z0-9@$']+")
_HAS_LETTER = re.compile(r"[a-z]")
# Runs of single letters separated by spaces or punctuation ("i g n o r e", "r.e.v.e.a.l").
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*]){3,}[a-z]\b")


def normalise(text: str) -> str:
    """Fold the text to the form the model reads: NFKC, casefolded, invisible characters removed,
    letter-spacing joined, leetspeak inside words undone, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    text = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)
    words = [w.translate(_LEET) if _HAS_LETTER.search(w) else w for w in _WORD.findall(text)]
    return " ".join(words)


def ngrams(normalised: str, char_sizes: Sequence[int] = (3, 4, 5)) -> list[str]:
    """Word unigrams and bigrams plus character n-grams within word boundaries (padded by spaces)."""
    words = normalised.split()
    grams = ["w:" + w for w in words]
    grams += ["b:" + a + " " + b for a, b in zip(words, words[1:], strict=False)]
    padded = " " + normalised + " "
    for n in char_sizes:
        grams += ["c:" + padded[i : i + n] for i in range(len(padded) - n + 1)]
    return grams


def bucket(gram: str, buckets: int) -> int:
    return zlib.crc32(gram.encode("utf-8")) % buckets


@dataclass(frozen=True)
class SparseRows:
    """Rows of a sparse matrix in CSR form (indptr, indices, data): what the models multiply."""

    indptr: np.ndarray  # int64, len = rows + 1
    indices: np.ndarray  # int32 bucket ids
    data: np.ndarray  # float32 weights
    n_features: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def dot(self, w: np.ndarray) -> np.ndarray:
        """X @ w for a dense weight vector."""
        out = np.zeros(self.n_rows, dtype=np.float64)
        if len(self.data):
            prod = self.data.astype(np.float64) * w[self.indices]
            row = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
            np.add.at(out, row, prod)
        return out

    def tdot(self, g: np.ndarray) -> np.ndarray:
        """X.T @ g (the gradient with respect to the weights)."""
        weights = self.data.astype(np.float64) * np.repeat(g, np.diff(self.indptr))
        return np.bincount(self.indices, weights=weights, minlength=self.n_features)


def counts(texts: Iterable[str], buckets: int) -> SparseRows:
    """Sublinear term counts (1 + log tf) per hashed bucket, one row per text."""
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for text in texts:
        row: dict[int, int] = {}
        for gram in ngrams(normalise(text)):
            b = bucket(gram, buckets)
            row[b] = row.get(b, 0) + 1
        keys = sorted(row)
        indices.extend(keys)
        data.extend(1.0 + np.log(row[k]) for k in keys)
        indptr.append(len(indices))
    return SparseRows(
        np.asarray(indptr, dtype=np.int64),
        np.asarray(indices, dtype=np.int32),
        np.asarray(data, dtype=np.float32),
        buckets,
    )


def document_frequency_idf(rows: SparseRows) -> np.ndarray:
    """Smoothed IDF per bucket, as scikit-learn computes it: ln((1 + n) / (1 + df)) + 1."""
    df = np.bincount(rows.indices, minlength=rows.n_features).astype(np.float64)
    return (np.log((1.0 + rows.n_rows) / (1.0 + df)) + 1.0).astype(np.float32)


def tfidf(rows: SparseRows, idf: np.ndarray) -> SparseRows:
    """Weight counts by IDF and L2-normalise each row (long and short texts score on one scale)."""
    data = rows.data * idf[rows.indices]
    lengths = np.diff(rows.indptr)
    row = np.repeat(np.arange(rows.n_rows), lengths)
    norms = np.sqrt(np.bincount(row, weights=data.astype(np.float64) ** 2, minlength=rows.n_rows))
    norms[norms == 0] = 1.0
    data = (data / norms[row]).astype(np.float32)
    return SparseRows(rows.indptr, rows.indices, data, rows.n_features)
