"""Smoke test of bench/multilingual_embedder.py with the stack's own MiniLM (the candidates are unpacked
from their wheels in `python -m bench.run multilingual_embedder`): a fresh child process measures load,
memory, size on disk and warm latency on one thread and on all."""

from __future__ import annotations

from bench import multilingual_embedder as bench


def test_minilm_is_measured_in_a_child_process() -> None:
    result = bench.run(("minilm",), reps=2)
    minilm = result["embedders"]["minilm"]
    assert result["reps"] == 2 and set(result["embedders"]) == {"minilm"}
    assert minilm["tokens"]["short"] < 40 < 200 < minilm["tokens"]["long"]  # a short message, a ~300-token one
    assert minilm["size_on_disk_mib"] > 20 and minilm["rss_added_mib"] > 0
    assert minilm["load_and_first_embedding_ms"] > 0
    assert len(minilm["latency_ms"]) == 2  # one thread, and the default
    for figures in minilm["latency_ms"].values():
        assert 0 < figures["short"] and 0 < figures["long"]
