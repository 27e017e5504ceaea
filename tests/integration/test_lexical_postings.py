"""Impact postings (migration 0011) on the real database: the search returns brute-force BM25's top k
through additions, replacements and deletions, postings mirror the chunks exactly, and tenants never see
each other's postings."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter

import numpy as np
import pytest

from stratus.db import chunks as chunk_store
from stratus.db import documents
from stratus.db.chunks import ChunkScope
from stratus.db.connection import connect, tenant_transaction
from stratus.db.records import ChunkDraft, SourceObject
from stratus.retrieval import impacts, lexical

MODEL = "all-MiniLM-L6-v2-int8"
K1, B = 1.5, 0.9  # the configured defaults (STRATUS_BM25_K1/B), at which ingestion builds the postings
# Made-up words (no stop words among them), Zipf-distributed: a few in most chunks, a long tail.
WORDS = [f"{a}{b}{c}ex" for a in "bdfgklmnprstvz" for b in ("al", "or", "un", "ip") for c in "kmt"]


def _text(rng: random.Random, length: int) -> str:
    return " ".join(rng.choices(WORDS, [1 / (i + 1) for i in range(len(WORDS))], k=length))


def _store(conn, tenant_id: str, key: str, texts: list[str], metadata: dict | None = None) -> str:
    drafts = [ChunkDraft(ordinal=i, text=t, token_count=len(t.split()), metadata=metadata or {})
              for i, t in enumerate(texts)]
    vectors = np.random.default_rng(len(texts)).normal(size=(len(texts), 384)).astype(np.float32)
    with tenant_transaction(tenant_id, conn):
        documents.ensure_tenant(conn, tenant_id)
        doc = documents.lock_document(conn, tenant_id, key)
        documents.replace_version(conn, doc, SourceObject(tenant_id=tenant_id, key=key), title=None,
                                  content_hash=uuid.uuid4().hex, chunks=drafts, embeddings=vectors,
                                  embedding_model=MODEL)
    return doc.id


def _delete(conn, tenant_id: str, key: str) -> None:
    with tenant_transaction(tenant_id, conn):
        documents.delete_document(conn, documents.lock_document(conn, tenant_id, key))


def _brute_force(conn, tenant_id: str, query: str, k: int, metadata: dict | None = None) -> list[tuple[int, float]]:
    """BM25 from the chunks themselves (N, avgdl and df counted here, not read from the statistics)."""
    with tenant_transaction(tenant_id, conn):
        terms = set(chunk_store.query_lexemes(conn, query))
        lengths = dict(conn.execute("SELECT id, lexeme_count FROM chunks WHERE tenant_id = %s", [tenant_id]))
        allowed = set(lengths) if not metadata else {r[0] for r in conn.execute(
            "SELECT id FROM chunks WHERE tenant_id = %s AND metadata @> %s::jsonb",
            [tenant_id, __import__("json").dumps(metadata)])}
        tfs = conn.execute(
            "SELECT c.id, u.lexeme, coalesce(array_length(u.positions, 1), 1) FROM chunks c, unnest(c.lexemes) u"
            " WHERE c.tenant_id = %s", [tenant_id]).fetchall()
    n, avgdl = len(lengths), sum(lengths.values()) / len(lengths)
    df = Counter(term for _, term, _ in tfs)
    scores: dict[int, float] = {}
    for cid, term, tf in tfs:
        if term in terms and cid in allowed:
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            scores[cid] = scores.get(cid, 0.0) + idf * tf * (K1 + 1) / (
                tf + K1 * (1 - B + B * lengths[cid] / avgdl))
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]


def _search(conn, tenant_id: str, query: str, k: int = 10, scope: ChunkScope | None = None) -> lexical.LexicalResult:
    with tenant_transaction(tenant_id, conn):
        return lexical.search(conn, tenant_id, query, scope or ChunkScope(), limit=k, k1=K1, b=B, max_postings=20000)


def _assert_same(got: lexical.LexicalResult, want: list[tuple[int, float]]) -> None:
    assert got.exact
    assert [s for _, s in got.hits] == pytest.approx([s for _, s in want], rel=1e-6)
    # Ids must agree wherever the score is not tied with another chunk's
    for (gid, gs), (wid, _) in zip(got.hits, want, strict=True):
        if sum(math.isclose(gs, s, rel_tol=1e-9) for _, s in want) == 1:
            assert gid == wid


def _postings_mirror_chunks(conn, tenant_id: str) -> None:
    with tenant_transaction(tenant_id, conn):
        want = set(conn.execute("SELECT u.lexeme, c.id FROM chunks c, unnest(c.lexemes) u WHERE c.tenant_id = %s",
                                [tenant_id]).fetchall())
        got = conn.execute("SELECT term, chunk_id FROM lexical_postings WHERE tenant_id = %s",
                           [tenant_id]).fetchall()
    assert len(got) == len(set(got)) and set(got) == want


@pytest.fixture(params=["scope_ids", "scored"])
def impacts_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small slices (so the threshold algorithm deepens) and no GIN path to fall back on; a metadata scope
    either read as ids first or (no scope small enough) decided on each chunk's row."""
    monkeypatch.setattr(impacts, "FIRST_DEPTH", 2)
    monkeypatch.setattr(impacts, "GROWTH", 2)
    if request.param == "scored":
        monkeypatch.setattr(lexical, "SCOPE_IDS_MAX", 0)

    def no_gin(*args: object, **kwargs: object) -> list[tuple[int, float]]:
        raise AssertionError("the GIN path was used")

    monkeypatch.setattr(chunk_store, "bm25_search", no_gin)


def test_impact_search_matches_brute_force_through_replace_and_delete(db, tenant_id: str, impacts_only) -> None:
    rng = random.Random(19)
    # Given 12 documents of short chunks (their first postings fix the reference average length)
    for d in range(12):
        _store(db, tenant_id, f"d{d}.txt", [_text(rng, rng.randint(4, 30)) for _ in range(rng.randint(2, 6))],
               metadata={"part": "even" if d % 2 == 0 else "odd"})
    queries = [_text(rng, rng.randint(1, 5)) for _ in range(12)] + [" ".join(WORDS[:3]), WORDS[-1]]

    def check() -> None:
        _postings_mirror_chunks(db, tenant_id)
        for q in queries:
            want = _brute_force(db, tenant_id, q, 10)
            _assert_same(_search(db, tenant_id, q), want)
        for q in queries[:4]:
            want = _brute_force(db, tenant_id, q, 5, metadata={"part": "odd"})
            _assert_same(_search(db, tenant_id, q, 5, ChunkScope(metadata={"part": "odd"})), want)

    # Then every query returns brute-force BM25's top 10 (also under a metadata filter)
    check()
    # And after three documents are replaced by versions with much longer chunks (avgdl grows: the drift)
    for d in (1, 4, 7):
        _store(db, tenant_id, f"d{d}.txt", [_text(rng, rng.randint(60, 120)) for _ in range(3)],
               metadata={"part": "odd"})
    check()
    # And after two documents are deleted
    _delete(db, tenant_id, "d0.txt")
    _delete(db, tenant_id, "d4.txt")
    check()
    # And after a rebuild at the current average length
    with tenant_transaction(tenant_id, db):
        documents.rebuild_postings(db, tenant_id)
    check()


def test_deleting_every_document_leaves_no_postings(db, tenant_id: str) -> None:
    _store(db, tenant_id, "a.txt", ["alpha beta gamma", "beta delta"])
    _store(db, tenant_id, "b.txt", ["gamma epsilon"])
    _store(db, tenant_id, "a.txt", ["alpha zeta"])  # a new version
    _delete(db, tenant_id, "a.txt")
    _delete(db, tenant_id, "b.txt")
    with tenant_transaction(tenant_id, db):
        assert db.execute("SELECT count(*) FROM lexical_postings").fetchone() == (0,)
    assert _search(db, tenant_id, "alpha gamma").hits == []


def test_document_id_scope_falls_back_to_the_filtered_gin_path(db, tenant_id: str) -> None:
    rng = random.Random(7)
    doc_a = _store(db, tenant_id, "a.txt", [_text(rng, 20) for _ in range(5)])
    _store(db, tenant_id, "b.txt", [_text(rng, 20) for _ in range(5)])
    with tenant_transaction(tenant_id, db):
        ids_a = {r[0] for r in db.execute("SELECT id FROM chunks WHERE document_id = %s", [doc_a])}
    res = _search(db, tenant_id, " ".join(WORDS[:4]), scope=ChunkScope(document_ids=[doc_a]))
    assert res.hits and {c for c, _ in res.hits} <= ids_a


def test_tenants_never_see_each_others_postings(db, pg_url: str, new_tenant) -> None:
    a, b = new_tenant(), new_tenant()
    _store(db, a, "secret.txt", ["zyxwvut quorbleflax confidential", "quorbleflax again"])
    _store(db, b, "public.txt", ["nothing to see here"])
    with tenant_transaction(b, db):
        # RLS: B's transaction sees none of A's postings, even when it names A
        assert db.execute("SELECT count(*) FROM lexical_postings WHERE tenant_id = %s", [a]).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM lexical_postings WHERE term = 'quorbleflax'").fetchone() == (0,)
        ids, imps = chunk_store.read_postings(db, a, {"quorbleflax": chunk_store.POSTINGS_START}, 10)["quorbleflax"]
        assert len(ids) == len(imps) == 0
        assert len(chunk_store.chunk_ids_in_scope(db, a, ChunkScope(metadata={}), cap=100)) == 0
    assert _search(db, b, "quorbleflax").hits == []
    assert len(_search(db, a, "quorbleflax").hits) == 2
    with tenant_transaction(a, db):
        assert len(chunk_store.chunk_ids_in_scope(db, a, ChunkScope(metadata={}), cap=100)) == 2
    # And no write can plant a posting under another tenant
    with pytest.raises(Exception, match="row-level security"), tenant_transaction(b, db):
        db.execute("INSERT INTO lexical_postings (tenant_id, term, impact, chunk_id) VALUES (%s, 'x', 1, 1)", [a])
    with connect(pg_url, app_role=False) as owner:
        assert owner.execute("SELECT count(*) FROM lexical_postings WHERE tenant_id = %s", [a]).fetchone()[0] > 0
