"""The guard latency benchmark's probes, run once each (the figures themselves come from `make bench`):
the guard function's cold start and first use in a fresh interpreter, and the warm timing helper."""

from __future__ import annotations

from bench import guard_latency as gl


def test_the_handler_probe_times_the_import_and_the_first_input_and_output_stages() -> None:
    imported, first_input, first_output = gl._fresh(gl.HANDLER_PROBE, str(gl.ROOT / "functions" / "guard" / "app.py"),
                                                    "Hello, I am Ada Lovelace.", "Hi Ada.")
    assert 0 < imported < first_input  # the detectors load on first use, not at import
    assert first_output > 0


def test_warm_reports_the_median_of_runs() -> None:
    calls = []
    figures = gl._warm(calls.append, "text", 2, 3)
    assert len(calls) == 1 + 2 * 3  # one untimed warm-up call
    assert figures["runs"] == 2 and figures["rounds"] == 3 and 0 <= figures["p50_ms"] <= figures["p95_ms"]


def test_the_output_rails_run_over_passages_ingested_with_their_sentence_vectors(pg_url, monkeypatch) -> None:
    monkeypatch.setattr(gl, "OUTPUT_RUNS", 1)
    monkeypatch.setattr(gl, "OUTPUT_ROUNDS", 1)
    conn, tenant, passages = gl._stored_passages(pg_url)
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant, conn):
        stored = conn.execute("SELECT count(DISTINCT chunk_id) FROM chunk_sentences").fetchone()
    conn.close()
    assert [p.number for p in passages] == [1, 2, 3, 4, 5] and stored == (5,)
    warm, tokens = gl._output_rails(pg_url)
    assert {"leak/long", "groundedness/long", "groundedness_unstored/long", "pii_output/long",
            "output_rails/long", "output_step_default/long", "output_step_grounding_blocks/long",
            "after_response/long"} <= warm.keys()
    assert tokens > 250


def test_the_workflow_input_step_redacts_the_question_and_the_query(monkeypatch) -> None:
    from stratus.guard import rails

    seen = []
    check_input = rails.check_input

    def recording(messages, query, state):  # noqa: ANN001, ANN202
        out = check_input(messages, query, state)
        seen.append(out)
        return out

    monkeypatch.setattr(rails, "check_input", recording)
    gl._input_step_workflow(gl.SHORT)
    [(messages, query, _)] = seen
    assert messages[-1].content == query and "Maria Lopez" not in query and "<PERSON_1>" in query
