"""The offline embedders: MiniLM's vectors unchanged by the shared ONNX encoder, the optional L3 model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stratus.embeddings import get_embedder
from stratus.ingest.pipeline import embed_texts

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


def test_minilm_vectors_match_those_made_before_the_speed_changes() -> None:
    embedder = get_embedder("all-MiniLM-L6-v2-int8")
    texts, before = REFERENCE["texts"], np.array(REFERENCE["vectors"], dtype=np.float32)
    # Given the reference texts, embedded together (padded batch) and through ingestion's batching
    for now in (embedder.embed(texts), embed_texts(embedder, texts, batch_size=2)):
        # Then every vector points where it did before (stored vectors stay valid; no re-embedding)
        assert now.shape == before.shape
        assert np.min(np.sum(now * before, axis=1)) >= 0.9999


def test_a_texts_vector_does_not_depend_on_its_batch_neighbours() -> None:
    embedder = get_embedder("all-MiniLM-L6-v2-int8")
    texts = REFERENCE["texts"]
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.min(np.sum(alone * embedder.embed(texts), axis=1)) >= 0.9999


def test_an_embedding_beside_other_work_runs_on_one_thread_and_gives_the_same_vectors() -> None:
    from stratus.embeddings import alongside_other_work, runs_alongside

    embedder = get_embedder("all-MiniLM-L6-v2-int8")
    texts, before = REFERENCE["texts"], np.array(REFERENCE["vectors"], dtype=np.float32)
    # Given the reference texts embedded one at a time beside other work (hybrid retrieval's dense side)
    with alongside_other_work():
        assert runs_alongside()
        beside = np.vstack([embedder.embed([t], kind="query") for t in texts])
    # Then the vectors are the usual ones, and they came from a one-thread session of their own
    assert not runs_alongside()
    assert np.min(np.sum(beside * before, axis=1)) >= 0.9999
    single = embedder._single  # type: ignore[attr-defined]
    assert single is not None and single is not embedder._session  # type: ignore[attr-defined]
    assert single.get_session_options().intra_op_num_threads == 1


@pytest.fixture(scope="module")
def l3():  # type: ignore[no-untyped-def]
    return get_embedder("paraphrase-MiniLM-L3-v2")


def test_the_second_offline_model_is_in_the_registry(l3) -> None:  # type: ignore[no-untyped-def]
    assert (l3.model_name, l3.dimensions) == ("paraphrase-MiniLM-L3-v2", 384)
    assert l3.max_tokens == get_embedder("all-MiniLM-L6-v2-int8").max_tokens  # same chunks for both models
    vectors = l3.embed(["first text", "a second, longer text to pad the batch"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert l3.embed([]).shape == (0, 384)


def test_the_second_model_pools_as_its_own_export_does(l3) -> None:  # type: ignore[no-untyped-def]
    """The ONNX file also returns its sentence-transformers mean pooling: ours must agree with it."""
    texts = REFERENCE["texts"]
    l3.embed(texts[:1])
    theirs = []
    for text in texts:  # one text a run: no padding to account for
        ids = np.array([l3._tokenizer.encode(text).ids])
        theirs.append(l3._session.run(["461"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    pooled = np.array(theirs) / np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.min(np.sum(pooled * l3.embed(texts), axis=1)) >= 0.9999


def test_the_second_model_ranks_by_meaning(l3) -> None:  # type: ignore[no-untyped-def]
    query, related, unrelated = l3.embed(
        ["How often should API keys be rotated?", "Rotate API keys every 90 days.", "Invoices are issued monthly."]
    )
    assert float(query @ related) > float(query @ unrelated) + 0.2


def test_an_unknown_model_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="no-such-model"):
        get_embedder("no-such-model")


def test_runs_group_texts_by_length_within_the_token_budget() -> None:
    embedder = get_embedder("all-MiniLM-L6-v2-int8")
    lengths = [200, 12, 180, 40, 200, 7, 90, 256, 33]
    runs = embedder._runs(lengths)  # type: ignore[attr-defined]
    assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
    for run in runs:  # padded to its longest text, a run stays within the budget (a lone text may not)
        assert len(run) == 1 or len(run) * max(lengths[i] for i in run) <= embedder.batch_tokens  # type: ignore[attr-defined]
    flat = [lengths[i] for run in runs for i in run]
    assert flat == sorted(lengths)  # similar lengths together: little padding
