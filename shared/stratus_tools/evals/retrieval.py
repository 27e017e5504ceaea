"""Retrieval evaluation: ingest a corpus folder into a fresh tenant, run gold queries, score each mode.

    run_retrieval_eval(corpus_dir, queries_file, modes) -> [{"mode", "recall@5", "recall@10", "mrr@10",
                                                            "ndcg@10", "latency_p50_ms", "latency_p95_ms",
                                                            "queries"}, ...]

Queries are JSONL: {"id": "...", "query": "...", "relevant": ["<path relative to the corpus dir>", ...]}.
Relevance is binary and per document; a document counts as retrieved at its best-ranked chunk.

Mode `bm25s` is the yardstick for the lexical side: the bm25s library over the very chunks Stratus
stored for the eval tenant (read back from the database), collapsed to documents the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stratus.errors import InvalidInput
from stratus_tools.evals.jsonl import jsonl_objects

if TYPE_CHECKING:
    from stratus.config import Settings

RETRIEVER_MODES = ("lexical", "dense", "hybrid")
PEER = "bm25s"  # a plain BM25 library over the same chunks, as the lexical side's yardstick
MODES = (*RETRIEVER_MODES, PEER)
CORPUS_SUFFIXES = {".txt", ".md", ".html", ".htm", ".pdf"}
DOCS_SCORED = 10
CHUNKS_FETCHED = 100  # chunks per query, so that ~10 distinct documents remain after collapsing


class EvalInputError(InvalidInput):
    """A bad corpus or queries file; the message names the file (and line)."""


# ---- metrics (binary relevance) -------------------------------------------------------------------


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    for i, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 1) for i, doc in enumerate(ranked[:k], start=1) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def distinct_documents(keys: Iterable[str]) -> list[str]:
    """Documents in the order of their best-ranked chunk."""
    return list(dict.fromkeys(keys))


# ---- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalQuery:
    id: str
    query: str
    relevant: frozenset[str]


def corpus_files(corpus_dir: Path) -> dict[str, Path]:
    """Supported files below `corpus_dir`, keyed by their path relative to it (with '/')."""
    if not corpus_dir.is_dir():
        raise EvalInputError(f"{corpus_dir}: corpus directory does not exist", field="corpus")
    files = {
        p.relative_to(corpus_dir).as_posix(): p
        for p in sorted(corpus_dir.rglob("*"))
        if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES
    }
    if not files:
        suffixes = " ".join(sorted(CORPUS_SUFFIXES))
        raise EvalInputError(f"{corpus_dir}: no corpus files ({suffixes})", field="corpus")
    return files


def load_queries(queries_file: Path, corpus_keys: Iterable[str]) -> list[EvalQuery]:
    keys = set(corpus_keys)
    queries: list[EvalQuery] = []
    seen: set[str] = set()
    for where, obj in jsonl_objects(queries_file, error=EvalInputError, field="queries", what="queries file"):
        for name, kind in (("id", str), ("query", str), ("relevant", list)):
            if name not in obj:
                raise EvalInputError(f"{where}: missing field {name!r}", field=name)
            if not isinstance(obj[name], kind) or not obj[name]:
                raise EvalInputError(f"{where}: field {name!r} must be a non-empty {kind.__name__}", field=name)
        missing = [r for r in obj["relevant"] if not isinstance(r, str) or r not in keys]
        if missing:
            raise EvalInputError(f"{where}: relevant document(s) not in the corpus: {missing}", field="relevant")
        if obj["id"] in seen:
            raise EvalInputError(f"{where}: duplicate query id {obj['id']!r}", field="id")
        seen.add(obj["id"])
        queries.append(EvalQuery(obj["id"], obj["query"], frozenset(obj["relevant"])))
    if not queries:
        raise EvalInputError(f"{queries_file}: no queries", field="queries")
    return queries


# ---- the run --------------------------------------------------------------------------------------


def ingest_corpus(tenant_id: str, files: dict[str, Path]) -> None:
    from stratus.db.records import SourceObject
    from stratus.ingest.pipeline import ingest_document

    for key, path in files.items():
        data = path.read_bytes()
        result = ingest_document(tenant_id, key, data, SourceObject(tenant_id=tenant_id, key=key, size=len(data)))
        if result.status not in ("ingested", "unchanged"):
            raise EvalInputError(f"{path}: could not be ingested: {result.reason or result.status}", field="corpus")


def score_mode(
    tenant_id: str, queries: Sequence[EvalQuery], mode: str, settings: Settings | None = None
) -> dict[str, object]:
    if mode == PEER:
        return score_ranker(queries, mode, bm25s_ranker(tenant_id))
    from stratus.retrieval.models import RetrieveRequest
    from stratus.retrieval.service import retrieve

    def ask(q: str) -> list[str]:
        res = retrieve(
            RetrieveRequest(tenant_id=tenant_id, query=q, k=CHUNKS_FETCHED, mode=mode),  # type: ignore[arg-type]
            settings=settings,
        )
        return distinct_documents(h.source_key for h in res.hits)[:DOCS_SCORED]

    return score_ranker(queries, mode, ask)


def score_ranker(queries: Sequence[EvalQuery], mode: str, ask: Callable[[str], list[str]]) -> dict[str, object]:
    """Metrics of `ask` (query -> documents best first) over `queries`; latency per query in ms."""
    ask(queries[0].query)  # warm-up: first-use costs (model load, plan cache) are not per-query latency
    sums = {"recall@5": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0}
    latencies: list[float] = []
    for q in queries:
        start = time.perf_counter()
        ranked = ask(q.query)
        latencies.append((time.perf_counter() - start) * 1000)
        rel = set(q.relevant)
        sums["recall@5"] += recall_at(ranked, rel, 5)
        sums["recall@10"] += recall_at(ranked, rel, 10)
        sums["mrr@10"] += mrr_at(ranked, rel, 10)
        sums["ndcg@10"] += ndcg_at(ranked, rel, 10)
    out: dict[str, object] = {"mode": mode}
    out.update({name: round(total / len(queries), 4) for name, total in sums.items()})
    out["latency_p50_ms"] = round(percentile(latencies, 50), 2)
    out["latency_p95_ms"] = round(percentile(latencies, 95), 2)
    out["queries"] = len(queries)
    return out


# ---- the peer: bm25s over the very chunks Stratus stored -------------------------------------------


def stored_chunks(tenant_id: str) -> list[tuple[str, str]]:
    """(source key, the chunk's text with its title and headings, as Stratus indexes it before its own
    analysis) for every chunk of the tenant: the peer tokenizes it its own way."""
    from stratus.db.connection import tenant_transaction
    from stratus.lexical_analysis import chunk_text

    with tenant_transaction(tenant_id) as conn:
        rows = conn.execute(
            "SELECT d.source_key, c.title, c.heading_path, c.text FROM chunks c"
            " JOIN documents d ON d.id = c.document_id"
            " WHERE c.tenant_id = %s AND d.tenant_id = %s AND d.status = 'ready' ORDER BY c.id",
            [tenant_id, tenant_id],
        ).fetchall()
    return [(key, chunk_text(title, list(headings or []), text)) for key, title, headings, text in rows]


def bm25s_ranker(tenant_id: str) -> Callable[[str], list[str]]:
    """bm25s as its users run it: its own tokenizer and English stop words, its defaults (Lucene BM25,
    k1=1.5, b=0.75), and the Snowball English stemmer when PyStemmer is installed."""
    import bm25s

    stemmer = _stemmer()
    chunks = stored_chunks(tenant_id)
    keys = [key for key, _ in chunks]
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([text for _, text in chunks], stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    depth = min(CHUNKS_FETCHED, len(keys))

    def ask(q: str) -> list[str]:
        tokens = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
        ids, scores = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
        ranked = [keys[int(i)] for i, s in zip(ids[0], scores[0], strict=True) if s > 0]
        return distinct_documents(ranked)[:DOCS_SCORED]

    return ask


def _stemmer() -> Callable[[list[str]], list[str]] | None:
    try:
        import Stemmer  # PyStemmer: optional, not pinned; bm25s runs unstemmed without it
    except ImportError:
        return None
    return Stemmer.Stemmer("english").stemWords  # type: ignore[no-any-return]


def run_retrieval_eval(
    corpus_dir: str | Path,
    queries_file: str | Path,
    modes: Sequence[str] = MODES,
    *,
    keep_tenant: bool = False,
) -> list[dict[str, object]]:
    """Score `modes` on a gold set; the corpus goes into a fresh tenant, dropped afterwards."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise EvalInputError(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}", field="mode")
    files = corpus_files(Path(corpus_dir))
    queries = load_queries(Path(queries_file), files)  # validated before any ingestion work
    tenant_id = f"eval-{uuid.uuid4().hex[:12]}"
    try:
        ingest_corpus(tenant_id, files)
        return [score_mode(tenant_id, queries, mode) for mode in modes]
    finally:
        if not keep_tenant:
            _drop_tenant(tenant_id)


def _drop_tenant(tenant_id: str) -> None:
    from stratus.db.connection import tenant_transaction
    from stratus.db.documents import delete_tenant

    with tenant_transaction(tenant_id) as conn:
        delete_tenant(conn, tenant_id)


def main(argv: Sequence[str] | None = None) -> int:
    """`stratus eval retrieval --corpus DIR --queries FILE.jsonl [--mode lexical|dense|hybrid|all]`:
    one JSON line per mode on stdout; exit status 2 with a message on bad input."""
    parser = argparse.ArgumentParser(prog="stratus eval retrieval", description=main.__doc__)
    parser.add_argument("--corpus", required=True, type=Path, help="folder of .txt .md .html .htm .pdf files")
    parser.add_argument("--queries", required=True, type=Path, help="JSONL gold queries")
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all")
    parser.add_argument("--keep-tenant", action="store_true", help="leave the eval tenant's data in place")
    args = parser.parse_args(argv)
    modes = MODES if args.mode == "all" else (args.mode,)
    try:
        results = run_retrieval_eval(args.corpus, args.queries, modes, keep_tenant=args.keep_tenant)
    except InvalidInput as err:
        print(f"stratus eval retrieval: {err.message}", file=sys.stderr)
        return 2
    for row in results:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
