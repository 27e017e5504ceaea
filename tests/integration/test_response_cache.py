"""Response cache on the embedded database with real MiniLM embeddings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stratus.cache import CacheScope, embed_question, lookup, purge_expired, renumber_citations, store
from stratus.config import get_settings
from stratus.db import response_cache as rows
from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput
from stratus.llm.types import ContextPassage
from stratus_tools.cache.calibrate import PAIRS, curve, load_pairs, similarities

MODEL = "all-MiniLM-L6-v2-int8"
THRESHOLD = get_settings().cache_similarity


def _passage(number: int, chunk_id: int, doc: str = "doc-a", version: int = 1) -> ContextPassage:
    return ContextPassage(number=number, chunk_id=chunk_id, document_id=doc, document_version=version,
                          source_key=f"{doc}.md", text=f"passage {chunk_id}")


V1 = [_passage(1, 101), _passage(2, 102), _passage(3, 201, doc="doc-b")]


def _scope(tenant: str, **changes: str) -> CacheScope:
    return CacheScope(**{"tenant_id": tenant, "prompt_hash": "p-hash-1", "model_alias": "fast",
                         "params_hash": "params-1", **changes})


def _answer(text: str, cited: list[int]) -> dict:
    return {"text": text, "citations": cited, "provider": "offline"}


def _store(conn, scope: CacheScope, question: str, passages=V1, cited=(101,), **kw) -> int:  # noqa: ANN001
    return store(conn, scope, question, passages, list(cited), embed_question(question),
                 _answer(f"answer to {question} [1]", list(cited)), ttl_s=kw.pop("ttl_s", 3600),
                 embedding_model=MODEL, **kw)


def _lookup(conn, scope: CacheScope, question: str, passages=V1, **kw):  # noqa: ANN001, ANN202
    return lookup(conn, scope, question, passages, embed_question(question), semantic=kw.pop("semantic", True),
                  threshold=kw.pop("threshold", THRESHOLD), **kw)


@pytest.fixture
def other_tenant(new_tenant) -> str:  # noqa: ANN001
    return new_tenant()


def test_exact_hit_ignores_case_and_whitespace(db, tenant_id: str) -> None:  # noqa: ANN001
    with tenant_transaction(tenant_id, db):
        entry = store(db, _scope(tenant_id), "How do I rotate an API key?", V1, [101], None,
                      _answer("Rotate it in settings [1].", [101]), ttl_s=3600, embedding_model=None)
        hit = lookup(db, _scope(tenant_id), "  how do i ROTATE an api key? ", V1, None, semantic=True,
                     threshold=THRESHOLD)
    assert hit is not None and hit.kind == "exact" and hit.similarity == 1.0 and hit.entry_id == entry
    assert hit.response["text"] == "Rotate it in settings [1]."


def test_paraphrase_hits_semantically_and_counts_the_hit(db, tenant_id: str) -> None:  # noqa: ANN001
    scope = _scope(tenant_id)
    with tenant_transaction(tenant_id, db):
        entry = _store(db, scope, "How do I cancel my subscription?")
        hit = _lookup(db, scope, "How can I cancel my subscription?")
        again = _lookup(db, scope, "How can I cancel my subscription?")
        hits = db.execute("SELECT hits FROM response_cache WHERE id = %s", [entry]).fetchone()[0]
    assert hit is not None and hit.kind == "semantic" and hit.entry_id == entry
    assert THRESHOLD <= hit.similarity < 1.0
    assert again is not None and hits == 2


@pytest.mark.parametrize(
    "question",
    [
        "How do I renew my subscription?",  # same words, another action
        "What is the refund policy?",  # unrelated
        "How do I not cancel my subscription?",  # negation the embedding barely sees
    ],
)
def test_different_questions_miss(db, tenant_id: str, question: str) -> None:  # noqa: ANN001
    scope = _scope(tenant_id)
    with tenant_transaction(tenant_id, db):
        _store(db, scope, "How do I cancel my subscription?")
        assert _lookup(db, scope, question) is None


def test_numbers_must_match_for_a_semantic_hit(db, tenant_id: str) -> None:  # noqa: ANN001
    scope = _scope(tenant_id)
    with tenant_transaction(tenant_id, db):
        _store(db, scope, "Where do I find my invoices from 2023?")
        assert _lookup(db, scope, "Where do I find my invoices from 2024?") is None
        assert _lookup(db, scope, "Where can I find my invoices from 2023?") is not None


def test_changed_document_misses(db, tenant_id: str) -> None:  # noqa: ANN001
    # Given an answer citing chunk 101 of doc-a version 1
    scope = _scope(tenant_id)
    question = "How do I cancel my subscription?"
    with tenant_transaction(tenant_id, db):
        _store(db, scope, question)
        # When doc-a is re-ingested (version 2: new chunk ids), the same and a similar question miss
        v2 = [_passage(1, 301, version=2), _passage(2, 302, version=2), _passage(3, 201, doc="doc-b")]
        assert _lookup(db, scope, question, v2) is None
        assert _lookup(db, scope, "How can I cancel my subscription?", v2) is None
        # A version bump that kept a chunk id (defensive) misses as well
        bumped = [_passage(1, 101, version=2), *V1[1:]]
        assert _lookup(db, scope, "How can I cancel my subscription?", bumped) is None


def test_semantic_hit_survives_unrelated_context_changes_and_renumbers(db, tenant_id: str) -> None:  # noqa: ANN001
    scope = _scope(tenant_id)
    with tenant_transaction(tenant_id, db):
        _store(db, scope, "How do I cancel my subscription?", cited=(101, 201))
        # The cited chunks are still retrieved, in another order, beside a new one: the answer still holds.
        now = [_passage(1, 555, doc="doc-c"), _passage(2, 201, doc="doc-b"), _passage(3, 101)]
        hit = _lookup(db, scope, "How can I cancel my subscription?", now)
        # Only one of the cited chunks retrieved: the answer is not supported any more.
        partial = _lookup(db, scope, "How can I cancel my subscription?", now[:2])
    assert hit is not None and hit.kind == "semantic"
    assert dict(hit.renumbering) == {1: 3, 3: 2}
    assert renumber_citations("See [1] and [3].", hit.renumbering) == "See [3] and [2]."
    assert partial is None


def test_refusals_hit_only_on_the_same_context(db, tenant_id: str) -> None:  # noqa: ANN001
    scope = _scope(tenant_id)
    with tenant_transaction(tenant_id, db):
        store(db, scope, "How do I cancel my subscription?", V1, [], embed_question("How do I cancel my subscription?"),
              _answer("The documents do not say.", []), ttl_s=3600, embedding_model=MODEL)
        same = _lookup(db, scope, "How can I cancel my subscription?", list(reversed(V1)))
        more = _lookup(db, scope, "How can I cancel my subscription?", [*V1, _passage(4, 777, doc="doc-new")])
    assert same is not None and same.response["text"] == "The documents do not say."
    assert more is None  # new context may support an answer now


def test_other_scopes_and_tenants_miss(db, tenant_id: str, other_tenant: str) -> None:  # noqa: ANN001
    question = "How do I cancel my subscription?"
    with tenant_transaction(tenant_id, db):
        _store(db, _scope(tenant_id), question)
        for changed in ({"prompt_hash": "p-hash-2"}, {"model_alias": "smart"}, {"params_hash": "params-2"}):
            assert _lookup(db, _scope(tenant_id, **changed), question) is None
    with tenant_transaction(other_tenant, db):
        assert _lookup(db, _scope(other_tenant), question) is None
        # Even a scope naming the first tenant finds nothing: RLS hides its rows here.
        assert _lookup(db, _scope(tenant_id), question) is None
        assert rows.count_entries(db, tenant_id) == 0


def test_expired_entries_never_hit_and_are_purged(db, tenant_id: str) -> None:  # noqa: ANN001
    scope = _scope(tenant_id)
    question = "How do I cancel my subscription?"
    later = datetime.now(UTC) + timedelta(seconds=120)
    with tenant_transaction(tenant_id, db):
        _store(db, scope, question, ttl_s=60)
        _store(db, scope, "What is the refund policy?", ttl_s=3600)
        assert _lookup(db, scope, question) is not None
        assert _lookup(db, scope, question, now=later) is None
        assert _lookup(db, scope, "How can I cancel my subscription?", now=later) is None
        assert purge_expired(db, tenant_id, now=later) == 1
        assert rows.count_entries(db, tenant_id) == 1
        # Storing again after expiry replaces the entry under the same exact key.
        _store(db, scope, question, now=later)
        assert _lookup(db, scope, question, now=later + timedelta(seconds=1)) is not None


def test_store_validates_its_input(db, tenant_id: str) -> None:  # noqa: ANN001
    scope = _scope(tenant_id)
    with tenant_transaction(tenant_id, db):
        with pytest.raises(InvalidInput) as err:
            _store(db, scope, "q?", cited=(999,))
        assert err.value.field == "cited_chunk_ids"
        with pytest.raises(InvalidInput) as err:
            _store(db, scope, "q?", ttl_s=0)
        assert err.value.field == "ttl_s"


def test_labelled_pairs_are_precise_at_the_configured_threshold() -> None:
    # The threshold was chosen on this set (docs/cache.md): a semantic hit must never join two questions
    # that need different answers, and should still join most paraphrases.
    pairs = load_pairs(PAIRS)
    assert len(pairs) >= 80 and 0.4 <= sum(p.same for p in pairs) / len(pairs) <= 0.6
    (point,) = curve(pairs, similarities(pairs), (THRESHOLD,))
    assert point.precision == 1.0
    assert point.recall >= 0.5
