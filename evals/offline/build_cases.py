"""Build evals/offline/cases.jsonl from the retrieval gold set (evals/retrieval/).

For every gold query two cases, each a question with the passages a retriever would hand the model:
- answerable: the chunks of its relevant document(s) most similar to the question (up to 3), plus the
  2 most similar chunks of other documents, as top-k retrieval mixes them in;
- unanswerable: the 5 chunks most similar to the question from documents NOT marked relevant, i.e. what
  retrieval returns when the answer is missing. These are hard negatives on purpose: a random unrelated
  document would be refused by any threshold and teach nothing.
Passages are extracted and chunked exactly as ingestion does (settings' chunk budget), numbered [1..n] in
a per-case shuffled order so the relevant passage is not always first. Queries are split into `tune` and
`test` alternately within each family (kw-, std-, para-), so both splits hold every kind of question.

    .venv/bin/python evals/offline/build_cases.py   # rewrites evals/offline/cases.jsonl
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np

from stratus.config import get_settings
from stratus.embeddings import get_embedder
from stratus.ingest.chunking import chunk_document
from stratus.ingest.extract import extract
from stratus_tools.evals.retrieval import corpus_files, load_queries

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "evals" / "retrieval" / "corpus"
QUERIES = ROOT / "evals" / "retrieval" / "queries.jsonl"
OUT = Path(__file__).with_name("cases.jsonl")
RELEVANT_CHUNKS, DISTRACTORS, NEGATIVES = 3, 2, 5


def main() -> None:
    settings = get_settings()
    embedder = get_embedder(settings.embedding_model)
    files = corpus_files(CORPUS)
    queries = load_queries(QUERIES, files)
    chunks: list[tuple[str, int, str]] = []  # (document, ordinal, text)
    for key, path in files.items():
        doc = extract(path.read_bytes(), key)
        for draft in chunk_document(doc, embedder, max_tokens=settings.chunk_max_tokens,
                                    overlap_tokens=settings.chunk_overlap_tokens):
            chunks.append((key, draft.ordinal, draft.text))
    chunk_vectors = embedder.embed([text for _, _, text in chunks])
    query_vectors = embedder.embed([q.query for q in queries])

    family_index: dict[str, int] = {}
    lines = []
    for q, qv in zip(queries, query_vectors, strict=True):
        family = q.id.rsplit("-", 1)[0]
        split = "tune" if family_index.get(family, 0) % 2 == 0 else "test"
        family_index[family] = family_index.get(family, 0) + 1
        ranked = [chunks[i] for i in np.argsort(-(chunk_vectors @ qv), kind="stable")]
        relevant = [c for c in ranked if c[0] in q.relevant][:RELEVANT_CHUNKS]
        others = [c for c in ranked if c[0] not in q.relevant]
        for label, picked in (("answerable", relevant + others[:DISTRACTORS]), ("unanswerable", others[:NEGATIVES])):
            rng = random.Random(int(hashlib.sha256(f"{q.id}/{label}".encode()).hexdigest()[:8], 16))
            picked = list(picked)
            rng.shuffle(picked)
            passages = [{"number": n, "source_key": doc, "ordinal": ordinal, "text": text}
                        for n, (doc, ordinal, text) in enumerate(picked, start=1)]
            lines.append({
                "id": f"{q.id}/{label}", "query_id": q.id, "split": split, "question": q.query, "label": label,
                "relevant_numbers": [p["number"] for p in passages if p["source_key"] in q.relevant],
                "passages": passages,
            })
    OUT.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    print(f"{OUT}: {len(lines)} cases from {len(queries)} queries and {len(chunks)} chunks")


if __name__ == "__main__":
    main()
