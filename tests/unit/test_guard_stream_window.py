"""The stream window: which end of a streamed answer the output rails still hold back, chunk by chunk.
No detector runs here; what the rails then do with each released piece is tested with the real ones in
tests/integration/test_guard_streaming.py."""

from __future__ import annotations

import pytest

from stratus.guard.stream_window import WINDOW_CHARS, hold_from

CANARY = "stratus-canary-3f9c0a1be27d4c55"


def released(text: str, canary: str | None = None) -> str:
    return text[:hold_from(text, canary)]


def stream(pieces: list[str], canary: str | None = None) -> list[str]:
    """What a stream that holds back hold_from's window releases after each piece (the rest at the end)."""
    held, out = "", []
    for piece in pieces:
        held += piece
        cut = hold_from(held, canary)
        out.append(held[:cut])
        held = held[cut:]
    return [*out, held]


@pytest.mark.parametrize("text", ["Echo:", "Sure, ", "the refund is on its way. ", "yes;", "Hello world, "])
def test_text_that_no_rail_can_still_extend_is_released_at_once(text: str) -> None:
    assert released(text) == text


@pytest.mark.parametrize(("text", "kept"), [
    ("the refund is", "the refund "),  # "is" may still grow ("is@example.com")
    ("write to bob", "write to "),
    ("write to bob@exam", "write to "),
    ("call +44 20 7946", "call "),  # the next group may belong to the number
    ("card 4111 1111 ", "card "),
    ("account GB82 WEST 1234 ", "account "),
    ("I met Grace Hopper ", "I met "),  # a name may have more words to come
    ("I met Dr. Grace", "I met "),
    ("Hello <EMAIL_", "Hello "),
    ("Hello <", "Hello "),
    ("Hello <PERSON_12", "Hello "),
])
def test_a_value_that_may_still_grow_is_held_whole(text: str, kept: str) -> None:
    assert released(text) == kept


def test_a_run_ends_with_a_word_that_cannot_belong_to_it() -> None:
    assert released("I met Grace Hopper and") == "I met Grace Hopper "
    assert released("call +44 20 7946 0958 now") == "call +44 20 7946 0958 "
    assert released("I met Grace Hopper\nNext") == "I met Grace Hopper\n"  # a newline ends the name too


@pytest.mark.parametrize("name", ["Łukasz Żuk", "Émile Zola", "Ángel Di María", "Ørjan Ødegaard"])
def test_a_name_that_begins_with_a_capital_outside_ascii_is_held_whole(name: str) -> None:
    pieces = ["I", " met", *(" " + w for w in name.split()), " and", " she", "."]
    out = stream(pieces)
    assert "".join(out) == "I met " + name + " and she."
    released_name = [p for p in out if any(w in p for w in name.split())]
    assert released_name == [" " + name + " "] or released_name == [name + " "]


def test_a_particle_inside_a_name_is_held_with_it_and_one_without_a_name_is_not() -> None:
    assert released("I met Ludwig van") == "I met "
    assert released("I met Leonardo da ") == "I met "
    out = stream(["I", " met", " Ludwig", " van", " Beethoven", " and", " she", "."])
    assert [p for p in out if "Ludwig" in p or "van" in p or "Beethoven" in p] == ["Ludwig van Beethoven "]
    assert released("they met de") == "they met "  # "de" may still grow, but no name is under way
    assert released("they met de la ") == "they met de la "


def test_an_email_split_across_chunks_is_never_released_in_part() -> None:
    out = stream(["Write to", " ada", ".love", "lace@", "exam", "ple.com", " today", "."])
    assert out == ["Write ", "to ", "", "", "", "", "ada.lovelace@example.com ", "", "today."]


def test_a_placeholder_split_across_chunks_is_released_whole() -> None:
    out = stream(["Dear <PER", "SON", "_1", ">, hi", " there"])
    assert out == ["Dear ", "", "", "<PERSON_1>, ", "hi ", "there"]


def test_plain_words_go_out_one_chunk_behind_and_a_delimited_chunk_at_once() -> None:
    out = stream(["Echo:", " the", " refund", " is", " on", " its", " way", "."])
    assert out == ["Echo:", " ", "the ", "refund ", "is ", "on ", "its ", "", "way."]


def test_a_canary_split_across_chunks_is_never_released_in_part() -> None:
    out = stream(["the marker: ", CANARY[:9], CANARY[9:20], CANARY[20:], ". More"], CANARY)
    assert out[:4] == ["the marker: ", "", "", ""]
    # Once whole it is no longer a prefix: the canary rail, which reads everything generated, blocks it.
    assert "".join(out[:4]) == "the marker: " and CANARY in out[4]


@pytest.mark.parametrize("tail", ["stra", "S T R A T U S - c a n", "STRATUS-CANARY-3F9", "3f9c0a", "x 3f9c"])
def test_any_spelling_of_the_canarys_start_is_held(tail: str) -> None:
    text = "The marker is, " + tail
    assert released(text, CANARY).strip(" ,") in {"The marker is", "The marker is, x"}


def test_a_placeholder_is_never_split_by_the_canary_window() -> None:
    # The canary's random part may begin with the placeholder's digit: the cut falls before the placeholder.
    assert released("to <EMAIL_1>.", "stratus-canary-1f9c0a1be27d4c55") == "to "


def test_the_pii_window_is_bounded_and_the_canary_and_placeholders_are_not() -> None:
    url = "see https://example.com/" + "a" * 200
    assert len(url) - hold_from(url) == WINDOW_CHARS
    long_run = "x " + "Title " * 40
    assert len(long_run) - hold_from(long_run) <= WINDOW_CHARS
    spaced = "marker: " + " ".join(CANARY)  # 60+ characters, every one of them the canary's
    assert released(spaced, CANARY) == "marker: "


def test_without_a_pii_rail_that_can_change_the_text_only_the_canary_is_held() -> None:
    assert hold_from("write to bob@exam", pii=False) == len("write to bob@exam")
    assert released("Hello <EMAIL_", None) == "Hello "
    assert hold_from("Hello <EMAIL_", pii=False) == len("Hello <EMAIL_")
    assert hold_from("the marker: stratus-ca", CANARY, pii=False) == len("the marker: ")
