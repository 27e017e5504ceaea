"""The lexical index's analysis: identifiers kept whole and findable by their parts, one text per chunk."""

from __future__ import annotations

import pytest

from stratus.lexical_analysis import TS_CONFIG, chunk_text, indexed_text, normalise, query_terms, query_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AUTH_KEY_EXPIRED error", "AUTH-KEY-EXPIRED error"),
        ("call check_output()", "call check-output()"),
        ("TopologicalSorter and lruCache", "Topological-Sorter and lru-Cache"),
        ("HTTPServer IPv4Address", "HTTP-Server IPv4-Address"),
        ("urllib.parse and name/value pairs", "urllib-parse and name-value pairs"),
        # Versions, decimals, sentence ends and dunder names are left alone.
        ("v2.3.1 costs 0.75. Then __init__ runs", "v2.3.1 costs 0.75. Then __init__ runs"),
        ("plain words stay plain", "plain words stay plain"),
    ],
)
def test_normalise_writes_identifiers_as_hyphenated_compounds(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_chunk_and_query_are_analysed_alike() -> None:
    # The title and heading path prefix the text once each (an H1 repeating the title counts once).
    assert chunk_text("Keys", ["Keys", "Rotation"], "Rotate AUTH_KEY") == "Keys \nRotation \nRotate AUTH_KEY"
    assert indexed_text("Keys", ["Keys"], "see AUTH_KEY") == "Keys \nsee AUTH-KEY"
    assert query_text("AUTH_KEY") == "AUTH-KEY"
    assert TS_CONFIG == "stratus_english"  # migration 0014


def test_query_terms_prefer_a_compound_the_corpus_holds() -> None:
    # The compound occurs: its parts are left out, so the exact identifier decides.
    assert query_terms({"check-output": 1, "check": 40, "output": 30, "run": 5}) == {"check-output": 1, "run": 5}
    # The corpus lacks the compound (its df is not there): the parts still match.
    assert query_terms({"check": 40, "output": 30}) == {"check": 40, "output": 30}
