"""The ingest pipeline on the real database: versions, idempotency, ordering, failures, deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from stratus.config import load_settings
from stratus.db import documents
from stratus.db.connection import tenant_transaction
from stratus.db.records import SourceObject
from stratus.embeddings import get_embedder
from stratus.ingest.pipeline import embed_texts, ingest_document, remove_document
from tests.unit.test_extract import make_pdf

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
GUIDE_V1 = b"# Guide\n\nStratus ingests documents from S3.\n\n## Keys\n\nRotate keys every month.\n"
GUIDE_V2 = b"# Guide\n\nStratus ingests documents from S3 and the API.\n\n## Keys\n\nRotate keys weekly.\n"


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.inner = get_embedder("all-MiniLM-L6-v2-int8")
        self.model_name, self.dimensions, self.max_tokens = (
            "all-MiniLM-L6-v2-int8",
            384,
            self.inner.max_tokens,
        )
        self.texts = 0

    def embed(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.inner.token_offsets(text)


@pytest.fixture(scope="module")
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


def source(
    tenant: str, key: str, etag: str, minutes: int = 0, content_type: str | None = None
) -> SourceObject:
    return SourceObject(
        tenant,
        key,
        etag=etag,
        last_modified=T0 + timedelta(minutes=minutes),
        size=1,
        content_type=content_type,
    )


def chunks_of(db: psycopg.Connection, tenant: str, key: str) -> list[tuple]:
    with tenant_transaction(tenant, db):
        return db.execute(
            "SELECT c.document_version, c.ordinal, c.text, c.heading_path, c.page, c.title, c.token_count,"
            " vector_dims(c.embedding) FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.source_key = %s ORDER BY c.ordinal",
            [key],
        ).fetchall()


def doc_of(db: psycopg.Connection, tenant: str, key: str) -> documents.DocumentState:
    with tenant_transaction(tenant, db):
        state = documents.get_document(db, tenant, key)
    assert state is not None
    return state


def test_ingest_then_unchanged_then_update(db, tenant_id, embedder) -> None:
    # Given a new markdown document
    r1 = ingest_document(
        tenant_id, "guide.md", GUIDE_V1, source(tenant_id, "guide.md", "e1"), embedder=embedder
    )
    assert (r1.status, r1.version, r1.chunk_count) == ("ingested", 1, 2)
    assert {"extract", "chunk", "embed", "db"} <= r1.timings.keys()
    rows = chunks_of(db, tenant_id, "guide.md")
    assert [(v, text, heads, title, dims) for v, _, text, heads, _, title, _, dims in rows] == [
        (1, "Stratus ingests documents from S3.", ["Guide"], "Guide", 384),
        (1, "Rotate keys every month.", ["Guide", "Keys"], "Guide", 384),
    ]

    # When the same content arrives again (a duplicate event, or a re-upload): no embedding work
    before = embedder.texts
    r2 = ingest_document(
        tenant_id, "guide.md", GUIDE_V1, source(tenant_id, "guide.md", "e1b", 1), embedder=embedder
    )
    assert (r2.status, r2.version, r2.chunk_count) == ("unchanged", 1, 2)
    assert embedder.texts == before
    assert doc_of(db, tenant_id, "guide.md").etag == "e1b"

    # When the content changes: version 2 replaces version 1 entirely
    r3 = ingest_document(
        tenant_id, "guide.md", GUIDE_V2, source(tenant_id, "guide.md", "e2", 2), embedder=embedder
    )
    assert (r3.status, r3.version) == ("ingested", 2)
    rows = chunks_of(db, tenant_id, "guide.md")
    assert {r[0] for r in rows} == {2}
    assert [r[2] for r in rows] == ["Stratus ingests documents from S3 and the API.", "Rotate keys weekly."]
    with tenant_transaction(tenant_id, db):
        stats = db.execute(
            "SELECT chunk_count FROM lexical_stats WHERE tenant_id = %s", [tenant_id]
        ).fetchone()
        assert stats == (2,)


def test_an_older_version_arriving_late_does_not_roll_back(db, tenant_id, embedder) -> None:
    ingest_document(tenant_id, "a.md", GUIDE_V2, source(tenant_id, "a.md", "new", 10), embedder=embedder)
    late = ingest_document(
        tenant_id, "a.md", GUIDE_V1, source(tenant_id, "a.md", "old", 5), embedder=embedder
    )
    assert late.status == "skipped" and "stale" in (late.reason or "")
    state = doc_of(db, tenant_id, "a.md")
    assert (state.version, state.etag) == (1, "new")
    assert "and the API" in chunks_of(db, tenant_id, "a.md")[0][2]


def test_superseded_content_is_not_written(db, tenant_id, embedder) -> None:
    r = ingest_document(
        tenant_id, "b.md", GUIDE_V1, source(tenant_id, "b.md", "e1"), embedder=embedder, confirm=lambda: False
    )
    assert r.status == "skipped" and "superseded" in (r.reason or "")
    assert chunks_of(db, tenant_id, "b.md") == []


def test_failures_are_recorded_while_the_previous_version_keeps_serving(db, tenant_id, embedder) -> None:
    ingest_document(
        tenant_id,
        "r.pdf",
        make_pdf([["Report", "Sales rose."]]),
        source(tenant_id, "r.pdf", "e1"),
        embedder=embedder,
    )
    r = ingest_document(
        tenant_id, "r.pdf", b"%PDF-1.4 truncated", source(tenant_id, "r.pdf", "e2", 1), embedder=embedder
    )
    assert r.status == "failed" and r.reason and r.reason.startswith("extraction_failed")
    state = doc_of(db, tenant_id, "r.pdf")
    assert (state.status, state.version, state.error) == ("ready", 1, r.reason)
    assert [(c[2], c[4]) for c in chunks_of(db, tenant_id, "r.pdf")] == [("Report Sales rose.", 1)]

    # A later good version clears the error
    ok = ingest_document(
        tenant_id,
        "r.pdf",
        make_pdf([["Report", "Sales fell."]]),
        source(tenant_id, "r.pdf", "e3", 2),
        embedder=embedder,
    )
    assert ok.status == "ingested" and doc_of(db, tenant_id, "r.pdf").error is None


@pytest.mark.parametrize(
    ("key", "data", "code"),
    [
        ("deck.pptx", b"PK\x03\x04", "unsupported"),
        ("empty.md", b"\n\n", "extraction_failed"),
        ("big.txt", b"x" * 2048, "too_large"),
    ],
)
def test_a_new_document_that_cannot_be_ingested_is_marked_failed(
    db, tenant_id, embedder, key, data, code
) -> None:
    settings = load_settings(max_document_bytes=1024)
    r = ingest_document(
        tenant_id, key, data, source(tenant_id, key, "e"), embedder=embedder, settings=settings
    )
    assert r.status == "failed" and r.reason and r.reason.startswith(code + ":")
    state = doc_of(db, tenant_id, key)
    assert (state.status, state.version, state.error) == ("failed", 0, r.reason)


def test_changing_chunk_settings_reingests(db, tenant_id, embedder) -> None:
    ingest_document(tenant_id, "c.md", GUIDE_V1, source(tenant_id, "c.md", "e1"), embedder=embedder)
    other = load_settings(chunk_max_tokens=64, chunk_overlap_tokens=8)
    r = ingest_document(
        tenant_id, "c.md", GUIDE_V1, source(tenant_id, "c.md", "e1"), embedder=embedder, settings=other
    )
    assert (r.status, r.version) == ("ingested", 2)


def test_remove_document(db, tenant_id, embedder) -> None:
    ingest_document(tenant_id, "d.md", GUIDE_V1, source(tenant_id, "d.md", "e1"), embedder=embedder)
    stale = remove_document(tenant_id, "d.md", removed_at=T0 - timedelta(minutes=1))
    assert stale.status == "skipped"
    gone = remove_document(tenant_id, "d.md", removed_at=T0 + timedelta(minutes=1))
    assert gone.status == "deleted"
    assert chunks_of(db, tenant_id, "d.md") == []
    assert doc_of(db, tenant_id, "d.md").status == "deleted"
    assert remove_document(tenant_id, "d.md").status == "skipped"  # duplicate delete: a no-op
    with tenant_transaction(tenant_id, db):
        assert db.execute("SELECT chunk_count, total_length FROM lexical_stats").fetchone() == (0, 0)
        assert db.execute("SELECT count(*) FROM lexical_terms").fetchone() == (0,)

    # Re-created later with the same content: ingested again (a deleted document is not "unchanged")
    again = ingest_document(
        tenant_id, "d.md", GUIDE_V1, source(tenant_id, "d.md", "e1", 2), embedder=embedder
    )
    assert (again.status, again.version) == ("ingested", 2)


def test_embed_texts_restores_input_order(embedder) -> None:
    texts = ["a much longer sentence about vector databases and retrieval", "short", "medium length text"]
    batched = embed_texts(embedder, texts, batch_size=2)
    np.testing.assert_allclose(batched, embedder.embed(texts), atol=1e-5)
