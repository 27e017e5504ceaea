"""Chunking: the token budget holds for any input, overlap within sections, structure kept on chunks."""

from __future__ import annotations

import random
import re

import pytest

from stratus.embeddings import get_embedder
from stratus.ingest.blocks import Block, ExtractedDocument
from stratus.ingest.chunking import chunk_document


class Words:
    """A whitespace tokenizer (one token per word), so expectations can be counted by hand."""

    def __init__(self) -> None:
        self.calls = 0

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        self.calls += 1
        return [m.span() for m in re.finditer(r"\S+", text)]

    def count_tokens(self, text: str) -> int:
        return len(self.token_offsets(text))


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


@pytest.fixture(scope="module")
def tokenizer():  # the embedding model's own tokenizer (loads only the tokenizer, not the model)
    return get_embedder("all-MiniLM-L6-v2-int8")


def test_paragraphs_are_packed_without_splitting_them() -> None:
    doc = ExtractedDocument("text", "T", [Block(words(4, 0)), Block(words(4, 4)), Block(words(4, 8))])
    chunks = chunk_document(doc, Words(), max_tokens=8, overlap_tokens=0)
    assert [c.text for c in chunks] == [words(4, 0) + "\n\n" + words(4, 4), words(4, 8)]
    assert [c.token_count for c in chunks] == [8, 4]
    assert [c.ordinal for c in chunks] == [0, 1]
    assert all(c.title == "T" for c in chunks)


def test_overlap_carries_the_tail_of_the_previous_chunk() -> None:
    doc = ExtractedDocument("text", None, [Block(words(6, 0)), Block(words(6, 6)), Block(words(6, 12))])
    chunks = chunk_document(doc, Words(), max_tokens=9, overlap_tokens=3)
    assert [c.text for c in chunks] == [
        words(6, 0),
        words(3, 3) + "\n\n" + words(6, 6),
        words(3, 9) + "\n\n" + words(6, 12),
    ]


def test_overlap_shrinks_to_fit_the_budget() -> None:
    doc = ExtractedDocument("text", None, [Block(words(5, 0)), Block(words(8, 5))])
    chunks = chunk_document(doc, Words(), max_tokens=10, overlap_tokens=4)
    assert [c.text for c in chunks] == [words(5, 0), words(2, 3) + "\n\n" + words(8, 5)]


def test_long_paragraph_splits_at_sentences_then_hard_splits() -> None:
    sentences = [f"{words(3, i * 3)}." for i in range(4)]  # four 3-word sentences
    giant = words(12, 100)  # one "sentence" longer than the budget
    doc = ExtractedDocument("text", None, [Block(" ".join(sentences) + " " + giant)])
    chunks = chunk_document(doc, Words(), max_tokens=7, overlap_tokens=0)
    assert [c.text for c in chunks] == [
        f"{sentences[0]} {sentences[1]}",
        f"{sentences[2]} {sentences[3]}",
        words(7, 100),
        words(5, 107),
    ]


def test_sections_keep_heading_paths_and_pages_and_never_share_a_chunk() -> None:
    doc = ExtractedDocument(
        "markdown",
        "Guide",
        [
            Block("intro", ()),
            Block("install steps", ("Install",)),
            Block("more steps", ("Install",)),
            Block("keys", ("Install", "Keys")),
            Block("page one", (), 1),
            Block("page two", (), 2),
        ],
    )
    chunks = chunk_document(doc, Words(), max_tokens=50, overlap_tokens=10)
    assert [(c.text, c.heading_path, c.page) for c in chunks] == [
        ("intro", [], None),
        ("install steps\n\nmore steps", ["Install"], None),
        ("keys", ["Install", "Keys"], None),
        ("page one", [], 1),
        ("page two", [], 2),
    ]


def test_each_paragraph_is_tokenized_once_plus_one_check_per_chunk() -> None:
    blocks = [Block(words(30, i * 30)) for i in range(40)]
    tok = Words()
    chunks = chunk_document(ExtractedDocument("text", None, blocks), tok, max_tokens=100, overlap_tokens=20)
    assert tok.calls == len(blocks) + len(chunks)


def test_budget_never_exceeded_with_the_model_tokenizer(tokenizer) -> None:
    rng = random.Random(7)
    vocabulary = [
        "retrieval",
        "augmented",
        "generation",
        "Aurora",
        "pgvector",
        "tenant's",
        "x" * 40,
        "naïve",
        "über-long-hyphenated-compound",
        "2025-01-01",
        "$3.50",
        "e.g.",
        "日本語",
        "🙂",
        "—",
    ]

    def paragraph() -> str:
        sentences = []
        for _ in range(rng.randint(1, 10)):
            n = rng.choice([3, 10, 40, 300])  # some sentences alone exceed the budget
            sentences.append(
                " ".join(rng.choice(vocabulary) for _ in range(n)) + rng.choice([".", "!", "?", ""])
            )
        return " ".join(sentences)

    blocks = [Block(paragraph(), (f"H{rng.randint(1, 3)}",), None) for _ in range(12)]
    doc = ExtractedDocument("text", None, blocks)
    for max_tokens, overlap in [(200, 32), (64, 16), (32, 0)]:
        chunks = chunk_document(doc, tokenizer, max_tokens=max_tokens, overlap_tokens=overlap)
        assert chunks
        for c in chunks:
            assert c.token_count == tokenizer.count_tokens(c.text) <= max_tokens
        # Nothing lost: every word of the input appears in some chunk of its section.
        text = " ".join(c.text for c in chunks)
        assert all(w in text for b in blocks for w in b.text.split()[:5])


def test_invalid_budget_is_refused() -> None:
    doc = ExtractedDocument("text", None, [Block("a")])
    with pytest.raises(ValueError):
        chunk_document(doc, Words(), max_tokens=10, overlap_tokens=10)
