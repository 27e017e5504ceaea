"""Cache keys: what must and must not change them."""

from __future__ import annotations

import pytest

from stratus.cache.keys import (
    CacheScope,
    context_fingerprint,
    conversation_text,
    exact_key,
    is_single_question,
    normalize_question,
    params_hash,
    semantic_guard,
)
from stratus.cache.service import renumber_citations
from stratus.errors import InvalidInput
from stratus.llm.types import ChatRequest, ContextPassage, Message


def _passage(number: int, chunk_id: int, version: int = 1, doc: str = "d1") -> ContextPassage:
    return ContextPassage(number=number, chunk_id=chunk_id, document_id=doc, document_version=version,
                          source_key=f"{doc}.md", text=f"text of {chunk_id}")


def _request(**params: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="hi")], **params)  # type: ignore[arg-type]


SCOPE = CacheScope("acme", "prompt-sha", "fast", "params-sha")


def test_normalization_ignores_case_whitespace_and_unicode_width() -> None:
    assert normalize_question("  Reset\tMY   password?\n") == "reset my password?"
    assert normalize_question("ＲＥＳＥＴ password") == "reset password"  # NFKC folds full-width letters
    assert normalize_question("STRASSE") == normalize_question("straße")  # casefold, not lower


def test_exact_key_is_stable_under_normalization_only() -> None:
    fp = context_fingerprint([_passage(1, 10)])
    assert exact_key(SCOPE, "Reset my password", fp) == exact_key(SCOPE, " reset  MY password ", fp)
    assert exact_key(SCOPE, "Reset my password", fp) != exact_key(SCOPE, "Reset my username", fp)
    assert exact_key(SCOPE, "Reset my password", fp) != exact_key(SCOPE, "Reset my password", context_fingerprint([]))


@pytest.mark.parametrize("field", ["tenant_id", "prompt_hash", "model_alias", "params_hash"])
def test_every_scope_field_changes_the_keys(field: str) -> None:
    other = CacheScope(**{**SCOPE.__dict__, field: "something-else"})
    fp = context_fingerprint([])
    assert other.key != SCOPE.key
    assert exact_key(other, "q", fp) != exact_key(SCOPE, "q", fp)


def test_scope_refuses_empty_fields_by_name() -> None:
    with pytest.raises(InvalidInput) as err:
        CacheScope("acme", "", "fast", "p")
    assert err.value.field == "prompt_hash"


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0.7}, {"top_p": 0.5}, {"max_tokens": 10}, {"stop": ["\n"]}, {"seed": 1},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "none"}, {"response_format": {"type": "json_object"}},
    ],
)
def test_params_that_change_the_output_change_the_params_hash(params: dict) -> None:
    assert params_hash(_request(**params)) != params_hash(_request())


def test_params_hash_ignores_the_user_and_the_context() -> None:
    base = params_hash(_request())
    assert params_hash(_request(user="u-1")) == base
    assert params_hash(_request(context=[_passage(1, 10)])) == base
    # Key order inside a tool schema is not a difference.
    a = {"type": "function", "function": {"name": "f", "parameters": {"a": 1, "b": 2}}}
    b = {"function": {"parameters": {"b": 2, "a": 1}, "name": "f"}, "type": "function"}
    assert params_hash(_request(tools=[a])) == params_hash(_request(tools=[b]))


def test_context_fingerprint_ignores_order_and_numbering_but_not_versions() -> None:
    p1, p2 = _passage(1, 10), _passage(2, 11)
    assert context_fingerprint([p1, p2]) == context_fingerprint([_passage(1, 11), _passage(2, 10)])
    assert context_fingerprint([p1, p2]) != context_fingerprint([p1])
    assert context_fingerprint([p1]) != context_fingerprint([_passage(1, 10, version=2)])
    assert context_fingerprint([p1]) != context_fingerprint([_passage(1, 10, doc="d2")])


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Which features are included in the free plan?", "Which features are not included in the free plan?"),
        ("Can I bring my dog?", "Can't I bring my dog?"),
        ("Where are my invoices from 2023?", "Where are my invoices from 2024?"),
        ("What does error E1234 mean?", "What does error E1235 mean?"),
        ("Can I change the address after ordering?", "Can I change the address before ordering?"),
        ("What is the maximum upload size?", "What is the minimum upload size?"),
        ("How do I enable dark mode?", "How do I disable dark mode?"),
    ],
)
def test_guard_separates_what_embeddings_blur(a: str, b: str) -> None:
    assert semantic_guard(a) != semantic_guard(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the maximum file size?", "What's the max file size I can upload?"),
        ("How do I reset my password?", "how can I reset my password"),
        ("What changed in Python 3.11?", "Which things changed in python 3.11"),
        ("Is it not allowed?", "Isn't it permitted?"),
    ],
)
def test_guard_keeps_paraphrases_together(a: str, b: str) -> None:
    assert semantic_guard(a) == semantic_guard(b)


def test_conversation_text() -> None:
    single = [Message(role="user", content="What is RLS?")]
    assert is_single_question(single) and conversation_text(single) == "What is RLS?"
    dialogue = [Message(role="system", content="Be terse."), *single]
    assert not is_single_question(dialogue)
    assert conversation_text(dialogue) != conversation_text([Message(role="system", content="Be verbose."), *single])


def test_renumber_citations_maps_markers_to_current_numbers() -> None:
    assert renumber_citations("A [1], B [2] and [3].", {1: 2, 2: 1}) == "A [2], B [1] and [3]."
    assert renumber_citations("Same [1].", {1: 1}) == "Same [1]."
