"""The tracing benchmark at a tiny size: both gateways answer every request of the mix, only the traced one
exports (and every span it made reaches the receiver), and `stratus dev` exports one trace per request and
per ingested document, each a single tree under the caller's span."""

from __future__ import annotations

from pathlib import Path

from bench import tracing_overhead as tb


def test_tracing_on_vs_off_measures_every_kind_and_counts_the_spans(pg_url: str, tmp_path: Path) -> None:
    result = tb.overhead(pg_url, tmp_path, rounds=2, requests=2)
    assert set(result["by_kind"]) == set(tb.KINDS)
    for figures in result["by_kind"].values():
        assert len(figures["rounds"]) == 2 and figures["off_p50_ms"] > 0 and figures["on_p50_ms"] > 0
    # the traced gateway exported spans for every request (a request span at least), the other none
    assert result["receiver"]["spans"] >= result["receiver"]["requests_on"] > 0
    assert result["gateway_cpu_ms_per_request"]["off"] > 0


def test_spans_per_request_are_one_tree_per_request(pg_url: str, tmp_path: Path) -> None:
    result = tb.spans_per_request(pg_url, tmp_path)
    assert set(result) == {"ingest_one_document", "chat", "stream_chat", "rag", "stream_rag"}
    for kind in ("chat", "stream_chat", "rag", "stream_rag"):
        tree = result[kind]
        assert tree["roots"] == ["POST /v1/chat/completions"], (kind, tree)  # one tree under the caller's span
        assert tree["names"]["admission"] == 1 and tree["depth"] >= 2
    assert {"workflow", "guard", "retrieve", "generate", "provider_attempt"} <= set(result["rag"]["names"])
    assert result["rag"]["names"]["guard"] == 3 and result["rag"]["spans"] > result["chat"]["spans"]
    assert {"lexical", "dense"} <= set(result["stream_rag"]["names"])
    ingest = result["ingest_one_document"]
    assert ingest["roots"] == ["ingest"] and {"message", "extract", "chunk", "embed", "store"} <= set(ingest["names"])
