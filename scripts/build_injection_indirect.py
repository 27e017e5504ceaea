"""Build the indirect-injection evaluation set evals/guard/injection_indirect.jsonl (deterministic).

    .venv/bin/python scripts/build_injection_indirect.py     # rewrites the committed file byte for byte

Benign documentation pieces (the README text of the packages pinned in evals/guard/doc_sources.lock and
installed at that version under a permissive licence, plus the stdlib's module docstrings; see
stratus_tools.guard.training) from the VALIDATION and TEST sources only, each twice: as is (label 0) and
with one attack from the S-Labs split of the same name spliced in at a random sentence boundary
(label 1). Train sources never appear here: scripts/train_injection.py learns from them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from stratus.guard.injection import INDIRECT_SET, load_split
from stratus_tools.guard.training import DOC_SOURCES, doc_pieces, package_documents, splice, split_of, stdlib_documents

ROOT = Path(__file__).resolve().parents[1]
SEED = 5
MAX_PIECES_PER_SOURCE = 30  # one long README must not dominate a split


def build(lock: Path, seed: int = SEED) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    docs, _ = package_documents(lock)
    docs += stdlib_documents()
    rows: list[dict[str, object]] = []
    for split in ("validation", "test"):
        texts, labels = load_split(split)
        attacks = [t for t, y in zip(texts, labels, strict=True) if y == 1]
        for doc in sorted((d for d in docs if split_of(d.name) == split), key=lambda d: d.name):
            pieces = doc_pieces(doc.text)
            if len(pieces) > MAX_PIECES_PER_SOURCE:
                keep = sorted(rng.choice(len(pieces), MAX_PIECES_PER_SOURCE, replace=False).tolist())
                pieces = [pieces[i] for i in keep]
            for n, piece in enumerate(pieces):
                base = {"split": split, "source": doc.name, "version": doc.version}
                rows.append({"id": f"{split}/{doc.name}/{n}/clean", **base, "label": 0, "text": piece})
                attack = attacks[int(rng.integers(len(attacks)))]
                rows.append({"id": f"{split}/{doc.name}/{n}/spliced", **base, "label": 1,
                             "text": splice(piece, attack, rng)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lock", type=Path, default=DOC_SOURCES)
    ap.add_argument("--out", type=Path, default=INDIRECT_SET)
    args = ap.parse_args()
    rows = build(args.lock)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for split in ("validation", "test"):
        n = [r for r in rows if r["split"] == split]
        print(f"{split}: {len(n)} rows from {len({r['source'] for r in n})} sources")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
