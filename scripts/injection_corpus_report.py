"""Count the retrieved chunks of a document corpus that the context rail would flag.

    .venv/bin/python scripts/injection_corpus_report.py [--model STEM] [DIR ...]

Each file is extracted and chunked exactly as ingestion does (stratus.ingest, the configured chunk
sizes and the embedding model's tokenizer), then every chunk is scored by the injection detector and
compared with the artifact's context threshold (and, for reference, its input threshold). Defaults
to examples/corpus and evals/retrieval/corpus, which are benign except
evals/retrieval/corpus/security/guardrails.html: a document ABOUT prompt injection that quotes attacks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stratus.config import get_settings
from stratus.embeddings import get_embedder
from stratus.guard.injection import DEFAULT_MODEL, InjectionModel
from stratus.ingest.chunking import chunk_document
from stratus.ingest.extract import extract

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="*", type=Path,
                    default=[ROOT / "examples" / "corpus", ROOT / "evals" / "retrieval" / "corpus"])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="artifact stem (no suffix)")
    args = ap.parse_args()
    settings = get_settings()
    embedder = get_embedder(settings.embedding_model)
    model = InjectionModel.load(args.model)
    print(f"{args.model.name}: context threshold {model.context_threshold:.4f}, input threshold {model.threshold:.4f}")
    for root in (d.resolve() for d in args.dirs):
        total = flagged_ctx = flagged_in = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            doc = extract(path.read_bytes(), path.name)
            chunks = chunk_document(doc, embedder, max_tokens=settings.chunk_max_tokens,
                                    overlap_tokens=settings.chunk_overlap_tokens)
            for chunk in chunks:
                result = model.assess(chunk.text)
                total += 1
                flagged_in += result.score >= model.threshold
                if result.score >= model.context_threshold:
                    flagged_ctx += 1
                    snippet = " ".join(chunk.text.split())[:90]
                    print(f"  flagged {path.relative_to(root)} #{chunk.ordinal} {result.score:.3f} "
                          f"({result.view}): {snippet}")
        name = root.relative_to(ROOT) if root.is_relative_to(ROOT) else root
        print(f"{name}: {flagged_ctx}/{total} chunks over the context threshold "
              f"({flagged_in} over the input threshold)")


if __name__ == "__main__":
    main()
