"""Structure-aware chunking within a token budget measured by the embedding model's tokenizer.

Blocks are grouped into sections (same heading path and page); a chunk never spans two sections.
Within a section, paragraphs are packed greedily up to `max_tokens`; consecutive chunks of a section
share up to `overlap_tokens` tokens. A paragraph over budget is split at sentence boundaries, and a
sentence over budget at token boundaries, so no chunk exceeds the budget.

Each paragraph is tokenized once; pieces carry their token offsets, so packing, overlap and splits
are arithmetic on those offsets rather than repeated tokenization.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Protocol

from stratus.db.records import ChunkDraft
from stratus.ingest.blocks import Block, ExtractedDocument

# Bump when the chunking rules change: it is part of the content hash, so documents get re-chunked.
CHUNKER_VERSION = "1"

_SENTENCE_END = re.compile(r"(?<=[.!?;])[\"')\]]*\s+")


class Tokenizer(Protocol):
    def token_offsets(self, text: str) -> list[tuple[int, int]]: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class _Piece:
    """Text with the character spans of its tokens; `joiner` goes between it and the piece before."""

    text: str
    offsets: list[tuple[int, int]]
    joiner: str = "\n\n"

    @property
    def tokens(self) -> int:
        return len(self.offsets)


def chunk_document(
    doc: ExtractedDocument, tokenizer: Tokenizer, *, max_tokens: int, overlap_tokens: int
) -> list[ChunkDraft]:
    if max_tokens < 1 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError("need max_tokens >= 1 and 0 <= overlap_tokens < max_tokens")
    drafts: list[ChunkDraft] = []
    for (headings, page), blocks in groupby(doc.blocks, key=lambda b: (b.heading_path, b.page)):
        pieces = _pieces(blocks, tokenizer, max_tokens)
        for text in _pack(pieces, max_tokens, overlap_tokens):
            for part, count in _enforce_budget(text, tokenizer, max_tokens):
                drafts.append(ChunkDraft(
                    ordinal=len(drafts), text=part, token_count=count, title=doc.title,
                    heading_path=list(headings), page=page,
                ))
    return drafts


def _pieces(blocks: Iterable[Block], tokenizer: Tokenizer, max_tokens: int) -> Iterator[_Piece]:
    for block in blocks:
        offsets = tokenizer.token_offsets(block.text)
        if not offsets:
            continue
        if len(offsets) <= max_tokens:
            yield _Piece(block.text, offsets)
            continue
        for i, piece in enumerate(_split_long(block.text, offsets, max_tokens)):
            yield piece if i == 0 else _Piece(piece.text, piece.offsets, " ")


def _split_long(text: str, offsets: list[tuple[int, int]], max_tokens: int) -> Iterator[_Piece]:
    """A paragraph over budget: sentences (merged back up to the budget by the packer), else hard splits."""
    starts = [s for s, _ in offsets]
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        first, last = bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)
        if first == last:
            continue
        span = offsets[first:last]
        if len(span) <= max_tokens:
            yield _slice(text, span)
        else:
            yield from _hard_split(_slice(text, span), max_tokens)


def _hard_split(piece: _Piece, max_tokens: int) -> Iterator[_Piece]:
    """Windows of <= max_tokens tokens, ending before a word start where possible (a sub-word fragment
    such as "##ated" re-tokenizes differently on its own)."""
    offsets, n, i = piece.offsets, len(piece.offsets), 0
    while i < n:
        j = min(i + max_tokens, n)
        if j < n:
            k = j
            while k > i + 1 and not _word_start(piece.text, offsets[k][0]):
                k -= 1
            if _word_start(piece.text, offsets[k][0]):
                j = k
        yield _slice(piece.text, offsets[i:j])
        i = j


def _slice(text: str, span: list[tuple[int, int]]) -> _Piece:
    begin, end = span[0][0], span[-1][1]
    return _Piece(text[begin:end], [(s - begin, e - begin) for s, e in span])


def _concat(pieces: list[_Piece]) -> _Piece:
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    length = 0
    for i, p in enumerate(pieces):
        if i:
            parts.append(p.joiner)
            length += len(p.joiner)
        parts.append(p.text)
        offsets.extend((s + length, e + length) for s, e in p.offsets)
        length += len(p.text)
    return _Piece("".join(parts), offsets, pieces[0].joiner)


def _tail(piece: _Piece, k: int) -> _Piece | None:
    """The last <= k tokens of a piece, starting at a word boundary (not inside a word's sub-tokens)."""
    if k <= 0:
        return None
    j = max(len(piece.offsets) - k, 1)  # never the whole chunk again
    while j < len(piece.offsets) and not _word_start(piece.text, piece.offsets[j][0]):
        j += 1
    if j >= len(piece.offsets):
        return None
    return _slice(piece.text, piece.offsets[j:])


def _word_start(text: str, pos: int) -> bool:
    return pos == 0 or text[pos - 1].isspace() or not text[pos - 1].isalnum() or not text[pos].isalnum()


def _pack(pieces: Iterable[_Piece], max_tokens: int, overlap_tokens: int) -> Iterator[str]:
    current: list[_Piece] = []
    count = 0
    fresh = False  # whether `current` holds anything beyond the overlap carried from the last chunk
    for piece in pieces:
        if fresh and count + piece.tokens > max_tokens:
            chunk = _concat(current)
            yield chunk.text
            tail = _tail(chunk, min(overlap_tokens, max_tokens - piece.tokens))
            current, count, fresh = ([tail], tail.tokens, False) if tail else ([], 0, False)
        current.append(piece)
        count += piece.tokens
        fresh = True
    if fresh:
        yield _concat(current).text


def _enforce_budget(text: str, tokenizer: Tokenizer, max_tokens: int) -> Iterator[tuple[str, int]]:
    """Token counts add up across whitespace for WordPiece-style tokenizers; verify, and split if not.

    Recursion ends: a text over budget always splits into strictly shorter pieces.
    """
    offsets = tokenizer.token_offsets(text)
    if len(offsets) <= max_tokens:
        yield text, len(offsets)
        return
    for piece in _hard_split(_Piece(text, offsets), max_tokens):
        yield from _enforce_budget(piece.text, tokenizer, max_tokens)
