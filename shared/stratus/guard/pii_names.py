"""Where a name can be: the sentences of a tokenised text that spaCy's NER is worth running on.

NER is most of the PII rail's cost and grows with the text, yet a person or place name is a capitalised
word. A sentence qualifies when it holds a capitalised word that is not a stop word, except that a
sentence's first word alone does not count (every sentence starts with a capital: "Receipts must be
...") unless it is followed by another capitalised word or a possessive ("Maria Garcia asked", "Maria's
laptop"), or the line is a short run of capitalised words (a signature, "Thanks,\\nMaria"). Everything
else keeps NER away: all-lower-case prose, and sentences whose only capital is their first word.

Known miss: a one-word name that only ever opens sentences ("Okafor approved it."). A name found once is
swept everywhere else in the text by the PII rail (pii._sweep), so a name repeated mid-sentence covers its
sentence-initial uses.
"""

from __future__ import annotations

from typing import Any

_SENTENCE_END = frozenset({".", "!", "?", "…"})
_BULLETS = frozenset({"-", "*", "•", "–", "—", ">"})
_SHORT_LINE = 4  # tokens: "Maria Lopez", "Best regards, Maria"


def _capitalised(token: Any) -> bool:
    text = token.text
    return (text[:1].isupper() and not token.is_stop and any(c.islower() for c in text)
            and not any(c.isdigit() for c in text))


def sentences(doc: Any) -> list[tuple[int, int]]:
    """Token ranges of the sentences (and lines) of `doc`, spaces outside them."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i, token in enumerate(doc):
        if token.is_space and "\n" in token.text:
            if start is not None:
                out.append((start, i))
            start = None
            continue
        if start is None:
            if token.is_space or token.text in _BULLETS:
                continue
            start = i
        if token.text in _SENTENCE_END:
            out.append((start, i + 1))
            start = None
    if start is not None:
        out.append((start, len(doc)))
    return out


def may_name(doc: Any, start: int, end: int) -> bool:
    """Whether doc[start:end] (one sentence) can hold a person or place name (see the module docstring)."""
    words = [t for t in doc[start:end] if not t.is_space]
    if not words:
        return False
    if any(_capitalised(t) for t in words[1:]):
        return True
    first = words[0]
    if not _capitalised(first):
        return False
    if len(words) > 1 and words[1].lower_ in ("'s", "’s"):
        return True
    letters = [t for t in words if t.is_alpha]
    return len(words) <= _SHORT_LINE and all(_capitalised(t) for t in letters)


def windows(doc: Any) -> list[tuple[int, int]]:
    """Token ranges to run NER on: runs of consecutive sentences that may hold a name, merged."""
    out: list[tuple[int, int]] = []
    for start, end in sentences(doc):
        if not may_name(doc, start, end):
            continue
        if out and all(doc[i].is_space for i in range(out[-1][1], start)):
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out
