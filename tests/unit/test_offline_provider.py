"""The offline provider: extractive answers with citations, refusals, usage, streaming, budgets, and the
"cannot answer" threshold's accuracy on the held-out split of evals/offline/cases.jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stratus.llm import extractive
from stratus.llm.catalog import Deployment, Price
from stratus.llm.errors import InvalidRequest
from stratus.llm.providers.offline import NO_ANSWER, NO_CONTEXT, OfflineProvider, _question
from stratus.llm.types import ChatRequest, ContextPassage, Message

CASES = Path(__file__).resolve().parents[2] / "evals" / "offline" / "cases.jsonl"
# Held-out accuracy at the chosen threshold was 0.78 when it was calibrated (evals/offline/results.json);
# hard negatives (the nearest wrong documents) make this a demanding set. A drop below the floor means a
# change to sentence splitting or scoring needs the threshold re-chosen (evals/offline/calibrate.py).
TEST_SPLIT_ACCURACY_FLOOR = 0.72

DEPLOYMENT = Deployment(name="offline", provider="offline", model="stratus-offline-extractive",
                        price=Price(input=0, output=0), max_output_tokens=1024, timeout_s=10)

API_KEYS = (
    "Create keys from Settings. Each key has a name, a set of scopes and an expiry date of at most 365 days.\n\n"
    "To rotate a key without downtime, create the replacement first, deploy it to your clients, watch the "
    "\"last used\" column until the old key shows no traffic, and then revoke the old key. Revocation takes "
    "effect within sixty seconds across all regions.\n\n"
    "A request made with an expired key fails with HTTP 401 and the error code `AUTH_KEY_EXPIRED`."
)
PARENTAL_LEAVE = (
    "All employees who become parents, through birth, adoption or surrogacy, receive sixteen weeks of fully "
    "paid parental leave. The leave can be taken in up to three blocks within the first year."
)
EXPENSES = (
    "We reimburse reasonable costs of doing your job. Book flights and hotels through the travel portal at "
    "least fourteen days ahead when you can. Personal purchases on the card are not allowed."
)


@pytest.fixture(scope="module")
def provider() -> OfflineProvider:
    return OfflineProvider()


def passage(number: int, text: str, key: str = "doc.md") -> ContextPassage:
    return ContextPassage(number=number, chunk_id=number, document_id=key, document_version=1, source_key=key,
                          text=text)


def ask(question: str, context: list[ContextPassage] | None, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Answer from the context."),
                                 Message(role="user", content=question)], context=context, **kw)


def citations(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", text)}


def test_answer_quotes_the_relevant_passage_with_its_citation(provider):
    # Given the relevant passage among unrelated ones
    context = [passage(1, EXPENSES, "expenses.html"), passage(2, API_KEYS, "api-keys.md"),
               passage(3, PARENTAL_LEAVE, "leave.txt")]
    # When the question is about rotating keys
    out = provider.complete(ask("How do I rotate an API key without downtime?", context), DEPLOYMENT, timeout=30)
    # Then every sentence comes from passage 2 and carries [2]
    assert citations(out.text) == {2}
    assert "create the replacement first" in out.text
    sentences = re.split(r"(?<=\])[.!?]\s*", out.text.strip())
    assert all(s.endswith("[2]") for s in sentences if s)
    assert out.provider == "offline" and out.model == "stratus-offline-extractive"
    assert out.finish_reason == "stop"


def test_identifier_questions_find_the_exact_sentence(provider):
    context = [passage(1, PARENTAL_LEAVE), passage(2, API_KEYS)]
    out = provider.complete(ask("AUTH_KEY_EXPIRED", context), DEPLOYMENT, timeout=30)
    assert out.text.startswith("A request made with an expired key fails with HTTP 401")
    assert citations(out.text) == {2}


def test_unrelated_context_is_refused(provider):
    context = [passage(1, EXPENSES), passage(2, PARENTAL_LEAVE)]
    out = provider.complete(ask("What is the recovery time objective for a region failure?", context),
                            DEPLOYMENT, timeout=30)
    assert out.text == NO_ANSWER
    assert citations(out.text) == set()


def test_empty_context_is_refused(provider):
    out = provider.complete(ask("How many weeks of parental leave do employees get?", []), DEPLOYMENT, timeout=30)
    assert out.text == NO_ANSWER


def test_plain_chat_says_what_it_is(provider):
    out = provider.complete(ask("Hello, who are you?", None), DEPLOYMENT, timeout=30)
    assert out.text == NO_CONTEXT
    assert "not a language model" in out.text
    assert out.provider == "offline"


def test_tools_are_ignored(provider):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    out = provider.complete(ask("AUTH_KEY_EXPIRED", [passage(1, API_KEYS)], tools=[tool]), DEPLOYMENT, timeout=30)
    assert out.tool_calls == [] and out.finish_reason == "stop"


def test_streaming_concatenates_to_the_completion(provider):
    request = ask("How do I rotate an API key without downtime?", [passage(1, API_KEYS), passage(2, EXPENSES)])
    complete = provider.complete(request, DEPLOYMENT, timeout=30)
    chunks = list(provider.stream(request, DEPLOYMENT, timeout=30))
    assert len(chunks) >= 3  # several deltas, then the final chunk
    assert "".join(c.text for c in chunks) == complete.text
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == complete.usage


def test_usage_counts_rendered_messages_and_answer_with_the_tokenizer(provider):
    request = ask("How many weeks of parental leave do employees get?", [passage(1, PARENTAL_LEAVE)])
    out = provider.complete(request, DEPLOYMENT, timeout=30)
    tok = provider.embedder
    rendered = "system: Answer from the context.\nuser: How many weeks of parental leave do employees get?"
    assert out.usage.input_tokens == tok.count_tokens(rendered)
    assert out.usage.output_tokens == tok.count_tokens(out.text) > 0
    assert out.usage.cached_input_tokens == 0


def test_max_tokens_bounds_the_answer(provider):
    request = ask("How do I rotate an API key without downtime?", [passage(1, API_KEYS)])
    full = provider.complete(request, DEPLOYMENT, timeout=30)
    assert full.usage.output_tokens > 12
    cut = provider.complete(request.model_copy(update={"max_tokens": 12}), DEPLOYMENT, timeout=30)
    assert cut.finish_reason == "length"
    assert cut.usage.output_tokens <= 12
    assert full.text.startswith(cut.text)
    # the deployment's own limit caps a larger request
    small = DEPLOYMENT.model_copy(update={"max_output_tokens": 12})
    assert provider.complete(request.model_copy(update={"max_tokens": 500}), small, timeout=30).text == cut.text


def test_stop_sequence_ends_the_answer(provider):
    request = ask("How do I rotate an API key without downtime?", [passage(1, API_KEYS)], stop=["deploy it"])
    out = provider.complete(request, DEPLOYMENT, timeout=30)
    assert "deploy it" not in out.text and out.text.startswith("To rotate a key")


def test_same_input_same_output(provider):
    request = ask("How do I rotate an API key without downtime?", [passage(1, API_KEYS), passage(2, EXPENSES)])
    first, second = (provider.complete(request, DEPLOYMENT, timeout=30) for _ in range(2))
    assert first == second and first.response_id and first.response_id.startswith("offline-")


def test_question_rendered_with_its_context_is_still_matched(provider):
    # A template may put the passages into the user message; the provider matches the question only.
    context = [passage(1, EXPENSES), passage(2, PARENTAL_LEAVE)]
    # the shape prompts/rag-answer renders: "[n] source" line, passage text, then the question
    content = (f"Passages:\n[1] Expenses (expenses.html)\n{EXPENSES}\n\n[2] leave.txt\n{PARENTAL_LEAVE}\n\n"
               "Question: How long is parental leave?")
    request = ChatRequest(messages=[Message(role="user", content=content)], context=context)
    assert citations(provider.complete(request, DEPLOYMENT, timeout=30).text) == {2}
    plain = ChatRequest(messages=[Message(role="user", content="How long is parental leave?")], context=context)
    assert provider.complete(request, DEPLOYMENT, timeout=30).text == provider.complete(plain, DEPLOYMENT,
                                                                                         timeout=30).text


def test_a_passage_inside_another_is_not_left_in_the_question(provider):
    # Overlapping chunks: passage 1 is the first sentence of passage 2. Removing passage 1's text first
    # would leave the rest of passage 2 ("The leave can be taken ...") to be matched as the question.
    first = PARENTAL_LEAVE.split(". ")[0] + "."
    context = [passage(1, first), passage(2, PARENTAL_LEAVE), passage(3, EXPENSES)]
    content = (f"Passages:\n[1] leave.txt\n{first}\n\n[2] leave.txt\n{PARENTAL_LEAVE}\n\n[3] expenses.html\n"
               f"{EXPENSES}\n\nQuestion: How far ahead should flights be booked?")
    request = ChatRequest(messages=[Message(role="user", content=content)], context=context)
    assert _question(request) == "How far ahead should flights be booked?"
    assert citations(provider.complete(request, DEPLOYMENT, timeout=30).text) == {3}


def test_a_request_without_user_text_is_invalid(provider):
    request = ChatRequest(messages=[Message(role="system", content="be brief")], context=[])
    with pytest.raises(InvalidRequest) as err:
        provider.complete(request, DEPLOYMENT, timeout=30)
    assert err.value.field == "messages"


def test_sentence_splitting_keeps_abbreviations_and_drops_headings():
    text = "Unsupported files\nFiles such as .docx are refused, e.g. images.\n\n- First item\n- Version 1.2 ships."
    assert extractive.split_sentences(text) == [
        "Files such as .docx are refused, e.g. images.", "First item", "Version 1.2 ships."]


def test_citation_goes_before_the_final_punctuation():
    assert extractive.cite("Keys expire after a year.", 3) == "Keys expire after a year [3]."
    assert extractive.cite("No punctuation", 1) == "No punctuation [1]"


def test_threshold_accuracy_on_the_held_out_split(provider):
    # Given the labelled cases the threshold was NOT chosen on
    cases = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    test = [c for c in cases if c["split"] == "test"]
    assert len(test) >= 50 and {c["label"] for c in test} == {"answerable", "unanswerable"}
    # When each is answered
    correct = answered_from_relevant = answered = 0
    for case in test:
        context = [passage(p["number"], p["text"], p["source_key"]) for p in case["passages"]]
        out = provider.complete(ask(case["question"], context), DEPLOYMENT, timeout=60)
        says_answer = out.text != NO_ANSWER
        correct += says_answer == (case["label"] == "answerable")
        if says_answer and case["label"] == "answerable":
            answered += 1
            answered_from_relevant += citations(out.text) <= set(case["relevant_numbers"])
    # Then refusals and answers are right often enough, and answers cite the relevant document
    assert correct / len(test) >= TEST_SPLIT_ACCURACY_FLOOR
    assert answered_from_relevant / answered >= 0.9
