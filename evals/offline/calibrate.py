"""Choose the offline provider's relevance weight and "cannot answer" threshold on the tune split of
evals/offline/cases.jsonl, and report accuracy on the held-out test split.

For each semantic weight on a small grid, the threshold is the midpoint of the widest interval of best-
sentence scores that maximises tune accuracy (a midpoint, not an edge, so one case more or less does not
move it to a cliff). The weight with the best tune accuracy wins (ties: the wider margin). Results go to
evals/offline/results.json; the constants in stratus/llm/extractive.py are set from them by hand, so a
change is a reviewed diff.

    .venv/bin/python evals/offline/calibrate.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stratus.config import get_settings
from stratus.embeddings import get_embedder
from stratus.llm import extractive
from stratus_tools.evals.retrieval import percentile

HERE = Path(__file__).parent
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def load_cases(path: Path = HERE / "cases.jsonl") -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def accuracy(scored: list[tuple[float, bool]], threshold: float) -> float:
    return sum((score >= threshold) == answerable for score, answerable in scored) / len(scored)


def best_threshold(scored: list[tuple[float, bool]]) -> tuple[float, float, float]:
    """(threshold, accuracy, margin): the midpoint of the widest accuracy-maximising gap between scores."""
    values = sorted({round(s, 6) for s, _ in scored})
    candidates = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)]
    best = max(accuracy(scored, t) for t in candidates)
    gaps = [(b - a, (a + b) / 2) for a, b in zip(values, values[1:], strict=False)
            if accuracy(scored, (a + b) / 2) == best]
    width, mid = max(gaps)
    return round(mid, 3), best, width


def main() -> None:
    embedder = get_embedder(get_settings().embedding_model)
    cases = load_cases()
    features = []  # per case: [(semantic, lexical)] of its deduplicated sentences
    for case in cases:
        ex = extractive.extract(case["question"], [(p["number"], p["text"]) for p in case["passages"]], embedder)
        features.append([(s.semantic, s.lexical) for s in ex.ranked])

    def scored(weight: float, split: str) -> list[tuple[float, bool]]:
        return [(max(weight * s + (1 - weight) * lx for s, lx in f), c["label"] == "answerable")
                for c, f in zip(cases, features, strict=True) if c["split"] == split]

    grid = []
    for w in WEIGHTS:
        threshold, tune_acc, margin = best_threshold(scored(w, "tune"))
        grid.append({"semantic_weight": w, "threshold": threshold, "tune_accuracy": round(tune_acc, 4),
                     "margin": round(margin, 4), "test_accuracy": round(accuracy(scored(w, "test"), threshold), 4)})
    chosen = max(grid, key=lambda g: (g["tune_accuracy"], g["margin"]))
    print(json.dumps(grid, indent=1))
    sizes = {s: sum(c["split"] == s for c in cases) for s in ("tune", "test")}
    result = {"chosen": chosen, "grid": grid, "cases": sizes}
    result["in_code"] = {"semantic_weight": extractive.SEMANTIC_WEIGHT, "threshold": extractive.ANSWER_THRESHOLD,
                         "test_accuracy": round(accuracy(scored(extractive.SEMANTIC_WEIGHT, "test"),
                                                         extractive.ANSWER_THRESHOLD), 4)}
    result["citations"] = citation_precision(cases, embedder)
    result["latency_ms_10x200_tokens"] = latency(cases, embedder)
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "grid"}, indent=1))


def citation_precision(cases: list[dict], embedder) -> dict[str, float]:
    """On answerable test cases the constants accept: the share of cited sentences drawn from a passage of
    a relevant document, and the share of answers whose first sentence is."""
    cited = relevant = first_ok = answered = 0
    for case in cases:
        if case["label"] != "answerable" or case["split"] != "test":
            continue
        ex = extractive.extract(case["question"], [(p["number"], p["text"]) for p in case["passages"]], embedder)
        chosen = extractive.select(ex)
        if not chosen:
            continue
        answered += 1
        good = set(case["relevant_numbers"])
        cited += len(chosen)
        relevant += sum(s.sentence.number in good for s in chosen)
        first_ok += chosen[0].sentence.number in good
    return {"answered": answered, "sentence_precision": round(relevant / max(cited, 1), 4),
            "first_sentence_precision": round(first_ok / max(answered, 1), 4)}


def latency(cases: list[dict], embedder, runs: int = 10) -> dict[str, object]:
    """extract() over 10 passages of about 200 tokens (chunks of the corpus, the ingest budget): cold, with
    every sentence embedded, and warm, with the sentence vectors already cached (repeated passages)."""
    pool = sorted({p["text"] for c in cases for p in c["passages"]}, key=lambda t: -embedder.count_tokens(t))[:10]
    passages = list(enumerate(pool, start=1))
    tokens = [embedder.count_tokens(t) for _, t in passages]
    extractive.extract("warm up", passages, embedder)
    out: dict[str, object] = {"passage_tokens_mean": round(sum(tokens) / len(tokens), 1),
                              "sentences": sum(len(extractive.split_sentences(t)) for _, t in passages)}
    for mode in ("cold", "warm"):
        times = []
        for i in range(runs):
            if mode == "cold":
                extractive.sentence_vectors.clear()
            start = time.perf_counter()
            extractive.extract(cases[i % len(cases)]["question"], passages, embedder)
            times.append((time.perf_counter() - start) * 1000)
        out[mode] = {"p50": round(percentile(times, 50), 1), "p95": round(percentile(times, 95), 1)}
    return out


if __name__ == "__main__":
    main()
