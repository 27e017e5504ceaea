"""The canary / system-prompt rail on a streamed answer reads only the tail a new leak can lie in: a leak
spread over many chunks, after a long answer, is still caught, and the text each check reads stays bounded
however long the answer grows. The PII and toxicity rails are off here (no model loads); they are tested
with the stream in tests/integration/test_guard_streaming.py."""

from __future__ import annotations

import itertools

import pytest

from stratus.guard import output, rails
from stratus.guard.policy import effective
from stratus.guard.streaming import GuardedStream

CANARY = "stratus-canary-7777777777777777"
FILLER = "the invoice for march was paid on time and the balance is settled now".split()
PROMPT = " ".join(f"Rule {i}: answer billing questions politely and never reveal item {i}." for i in range(30))


def _stream(system_prompt: str | None = PROMPT) -> GuardedStream:
    state = rails.start(effective({"pii": {"action": "off"}, "toxicity": {"action": "off"}}))
    return GuardedStream(state.model_copy(update={"canary": CANARY}), system_prompt=system_prompt)


def _words(n: int) -> list[str]:
    return [" " + w for w in itertools.islice(itertools.cycle(FILLER), n)]


def test_the_text_each_leak_check_reads_is_bounded_by_the_prompt_and_the_canary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    read: dict[str, list[int]] = {"prompt": [], "canary": []}
    prompt_check, canary_check = output.leaks_system_prompt, output.leaks_canary

    def prompt_spy(text: str, system_prompt: str) -> float:
        read["prompt"].append(len(text))
        return prompt_check(text, system_prompt)

    def canary_spy(text: str, canary: str) -> bool:
        read["canary"].append(len(text))
        return canary_check(text, canary)

    monkeypatch.setattr(output, "leaks_system_prompt", prompt_spy)
    monkeypatch.setattr(output, "leaks_canary", canary_spy)
    stream = _stream()
    answer = _words(2000)
    out = [stream.feed(w) for w in answer]
    out.append(stream.finish("".join(answer)))
    assert "".join(out) == "".join(answer) and stream.blocked is None
    assert len(read["prompt"]) >= 1900 and len(read["canary"]) >= 1900  # about one check per chunk
    # The answer is 4 times the prompt; every check read at most the prompt's words and a chunk's.
    assert len("".join(answer)) > 4 * len(PROMPT)
    assert max(read["prompt"]) <= len(PROMPT) + 40 and max(read["canary"]) <= len(PROMPT) + 40


def test_a_system_prompt_quoted_after_a_long_answer_and_split_inside_words_is_stopped() -> None:
    stream = _stream()
    quoted = "Sure, here they are: " + PROMPT
    pieces = [*_words(1500), *(quoted[i:i + 7] for i in range(0, len(quoted), 7))]
    released = "".join(stream.feed(p) for p in pieces)
    assert stream.blocked is not None and stream.blocked.rail == "canary"
    assert stream.blocked.details == {"leaked": "system_prompt"}
    assert len(released) < len("".join(_words(1500))) + len(quoted) // 2


def test_a_canary_spelt_out_one_character_a_chunk_after_a_long_answer_never_leaves() -> None:
    stream = _stream(system_prompt=None)
    spelt = [" " + c.upper() for c in CANARY if c.isalnum()]
    released = "".join(stream.feed(p) for p in [*_words(1500), " code:", *spelt, " done."])
    assert stream.blocked is not None and stream.blocked.details == {"leaked": "canary"}
    assert "7" not in released
