"""The output rails on a streamed answer with the real detectors (Presidio and spaCy, the toxicity model):
each model chunk goes out as soon as the rails can judge it, and a PII value, a placeholder or the canary
split across chunks is never released in part."""

from __future__ import annotations

from stratus.guard import pii, rails
from stratus.guard.policy import effective
from stratus.guard.streaming import GuardedStream
from stratus.llm.types import Message

INSULT = "You are a worthless, pathetic idiot and everyone despises you."


# A fixed canary: a random one may begin with a letter these answers end a chunk with ("e"), and that
# letter would then wait for the next chunk.
CANARY = "stratus-canary-7777777777777777"


def _state(**overrides: dict[str, object]) -> rails.GuardState:
    return rails.start(effective(overrides)).model_copy(update={"canary": CANARY})


def _run(stream: GuardedStream, pieces: list[str]) -> list[str]:
    out = [stream.feed(piece) for piece in pieces]
    return [*out, stream.finish("".join(pieces))]


def test_each_word_goes_out_one_chunk_behind_the_model() -> None:
    pieces = ["Echo:", " the", " refund", " is", " on", " its", " way", "."]
    out = _run(GuardedStream(_state()), pieces)
    assert out == ["Echo:", "", " the ", "refund ", "is ", "on ", "its ", "", "way."]


def test_new_pii_split_across_chunks_is_masked_and_never_released_in_part() -> None:
    stream = GuardedStream(_state())
    out = _run(stream, ["Write", " to", " grace", ".hopper", "@navy", ".example", ".com", " or", " call",
                        " +44", " 20", " 7946", " 0958", " today", "."])
    assert "".join(out) == "Write to <EMAIL_1> or call <PHONE_1> today."
    assert not any(part in piece for piece in out for part in ("grace", "hopper", "navy", "+44", "7946"))
    pii = [v for v in stream.summary().verdicts if v.rail == "pii" and v.stage == "output"]
    assert pii[0].action == "redact" and set(pii[0].details["entities"]) == {"EMAIL", "PHONE"}


def test_the_streams_pii_count_is_of_distinct_values_as_outside_a_stream() -> None:
    answer = "Write to grace@example.com or call +44 20 7946 0958; again, grace@example.com today."
    stream = GuardedStream(_state())
    out = _run(stream, [" " + w if i else w for i, w in enumerate(answer.split(" "))])
    assert "".join(out) == "Write to <EMAIL_1> or call <PHONE_1>; again, <EMAIL_1> today."
    pii = [v for v in stream.summary().verdicts if v.rail == "pii" and v.stage == "output"]
    _, whole = rails.check_output(answer, _state())
    assert pii[0].details == {"entities": ["EMAIL", "PHONE"], "count": 2}
    assert pii[0].details == [v for v in whole.verdicts if v.rail == "pii"][0].details


def test_a_name_split_across_chunks_is_found_with_its_context_and_never_released_in_part() -> None:
    out = _run(GuardedStream(_state()), ["Yesterday", " I", " met", " Grace", " Hop", "per", " and", " she",
                                         " said", " hi", "."])
    assert "".join(out) == "Yesterday I met <PERSON_1> and she said hi."
    assert not any("Grace" in piece or "Hop" in piece for piece in out)


def test_a_name_that_begins_with_a_capital_outside_ascii_is_masked_and_never_released_in_part() -> None:
    out = _run(GuardedStream(_state()), ["I", " met", " Łukasz", " Żuk", " and", " she", "."])
    assert "".join(out) == "I met <PERSON_1> and she."
    assert not any("ukasz" in piece or "Żuk" in piece for piece in out)
    out = _run(GuardedStream(_state()), ["I", " met", " Ángel", " Ruiz", " and", " she", "."])
    assert "".join(out) == "I met <PERSON_1> and she."
    assert not any("ngel" in piece or "Ruiz" in piece for piece in out)
    # The small spaCy model does not tag "Émile Zola" in this sentence, streamed or not; the stream still
    # judges the name whole, as the whole answer is judged.
    answer = ["Yesterday", " I", " met", " Émile", " Zola", " and", " we", " talked", "."]
    out = _run(GuardedStream(_state()), answer)
    assert "".join(out) == pii.redact("".join(answer)).text
    assert [p for p in out if "mile" in p or "Zola" in p] == ["Émile Zola "]


def test_a_name_with_a_particle_is_judged_whole_streamed_as_it_is_whole() -> None:
    answer = "I met Leonardo da Vinci and she."
    out = _run(GuardedStream(_state()), [" " + w if i else w for i, w in enumerate(answer.split(" "))])
    assert "".join(out) == pii.redact(answer).text == "I met <PERSON_1> and she."
    assert not any("Leonardo" in piece or "Vinci" in piece for piece in out)


def test_the_callers_own_value_comes_back_whole_from_a_placeholder_split_across_chunks() -> None:
    _, _, state = rails.check_input([Message(role="user", content="I am Ada Lovelace")], None, _state())
    out = _run(GuardedStream(state), ["Hi", " <PER", "SON", "_1", ">,", " welcome", " back", "."])
    assert "".join(out) == "Hi Ada Lovelace, welcome back."
    assert [p for p in out if "<" in p or "Ada" in p] == ["Ada Lovelace,"]


def test_a_toxic_sentence_is_flagged_when_it_ends_and_its_words_are_not_held() -> None:
    stream = GuardedStream(_state())
    out = _run(stream, [" " + w if i else w for i, w in enumerate(INSULT.split())])
    assert sum(bool(p) for p in out) >= len(INSULT.split()) - 1 and "".join(out) == INSULT
    toxicity = [v for v in stream.summary().verdicts if v.rail == "toxicity"]
    assert toxicity[0].action == "flag" and toxicity[0].score >= toxicity[0].threshold
    assert stream.blocked is None


def test_under_a_toxicity_block_whole_sentences_are_held_and_the_toxic_one_never_leaves() -> None:
    stream = GuardedStream(_state(toxicity={"action": "block"}))
    words = ("Sure thing. " + INSULT + " Bye.").split(" ")
    out = [stream.feed(" " + w if i else w) for i, w in enumerate(words)]
    assert "".join(out) == "Sure thing. "  # the first sentence, released when it ended
    assert stream.blocked is not None and stream.blocked.rail == "toxicity"
    assert stream.finish("".join(words)) == ""


def test_a_system_prompt_quoted_word_by_word_is_stopped_before_its_second_half() -> None:
    system = ("You are the billing assistant of Acme Corp. Answer questions about invoices only, never discuss "
              "discounts, and escalate refund requests to a human agent.")
    stream = GuardedStream(_state(), system_prompt=system)
    words = system.split(" ")
    released = "".join(stream.feed(" " + w if i else w) for i, w in enumerate(words))
    assert stream.blocked is not None and stream.blocked.rail == "canary"
    assert released and len(released.split()) <= len(words) // 2
