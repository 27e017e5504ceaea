"""Output rails on a streamed answer: the caller gets each chunk as soon as the rails can judge it.

Only what a rail must see whole is held back (stratus.guard.stream_window): a placeholder not yet closed,
the start of the canary, a word, number or name the next chunk may still extend. The rest of each model
chunk goes out at once, after the canary rail has read everything generated so far and the PII rail has
re-redacted the piece (reading the text released just before it, so names are found by their context) and
restored the caller's placeholders. So a placeholder, the canary or a PII value split across model chunks
is still checked whole and never released in part, and a leak stops the stream before it is sent.

Toxicity is a score on text the model already produced and reads sentences: each sentence is scored when
it ends, and with the default `flag` that only records a verdict. Under `block` the stream holds whole
sentences again (the old behaviour: nothing toxic reaches the caller, at a sentence's delay before its
first byte). Groundedness needs the whole answer and runs at the end: the caller has the text by then, so
a block there ends the stream with an error event instead of the final chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stratus.guard import rails
from stratus.guard.pii import PLACEHOLDER
from stratus.guard.stream_window import hold_from
from stratus.llm.types import ContextPassage
from stratus.workflow_state import GuardState, GuardSummary, Verdict

# The end of a sentence or line: what the toxicity rail scores as one sentence.
_BOUNDARY = re.compile(r"[.!?:;](?=\s)\s*|\n+")
# A sentence is scored (and, under a toxicity block, released) anyway past this size (a list or a table
# with no sentence end in sight).
MAX_HELD_CHARS = 600
# How much of the released text the PII detector reads before a piece (a name's sentence, roughly).
CONTEXT_CHARS = 200
# Words and skeletons as the leak checks (stratus.guard.output) read them.
_LEAK_WORD = re.compile(r"\w+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_ORDER = {"pass": 0, "flag": 1, "fence": 2, "drop": 2, "redact": 3, "block": 4}


class GuardedStream:
    def __init__(self, state: GuardState, passages: Sequence[ContextPassage] = (),
                 system_prompt: str | None = None) -> None:
        self._state = state
        self._passages = list(passages)
        self._system_prompt = system_prompt
        self._policy = rails.policy_of(state)
        self._canary = state.canary if self._policy.enabled("canary") else None
        self._toxicity = "toxicity" in self._policy.rails and self._policy.enabled("toxicity")
        self._whole_sentences = self._toxicity and self._policy.rail("toxicity").action == "block"
        # Under `flag` the PII rail only records what it saw: no value is held back for it.
        self._pii = self._policy.enabled("pii") and self._policy.rail("pii").action != "flag"
        self._held = ""  # model text not released yet
        self._raw = ""  # everything the model said (the canary rail reads it whole)
        self._sentence = ""  # the model text of the sentence under way, not yet scored for toxicity
        self._seen: dict[str, str] = {}  # placeholders given to new PII in earlier pieces
        self._leak = _LeakTail(self._canary, system_prompt if self._policy.enabled("canary") else None)
        self._verdicts: list[Verdict] = []
        self._deferred: list[str] = []  # rails left to run after the response (rails.after_response)
        self.blocked: Verdict | None = None

    def feed(self, text: str) -> str:
        """Take a model chunk; return the text that may go to the caller now ('' while all of it is held, or
        once blocked)."""
        if self.blocked is not None or not text:
            return ""
        self._held += text
        self._raw += text
        if self._toxicity:
            self._sentence += text
            self._score_sentences(final=False)
            if self.blocked is not None:
                return ""
        cut = hold_from(self._held, self._canary, pii=self._pii)
        if self._whole_sentences:
            cut = min(cut, len(self._held) - len(self._sentence))
        if not self._held[:cut].strip():
            return ""  # only the space before a held word: it goes out with that word
        piece, self._held = self._held[:cut], self._held[cut:]
        return self._check(piece)

    def finish(self, answer: str) -> str:
        """The held tail (checked), then the whole-answer rails; `answer` is the complete model text."""
        if self.blocked is None and self._toxicity:
            self._score_sentences(final=True)
        held, self._held = self._held, ""
        tail = self._check(held) if held and self.blocked is None else ""
        if self.blocked is None and self._passages and self._policy.enabled("groundedness"):
            if rails.after_response(self._policy, "groundedness"):
                self._deferred = ["groundedness"]
            else:
                self._add([rails.groundedness_verdict(answer, self._passages, self._policy)])
        return tail

    def summary(self) -> GuardSummary:
        """The request's verdicts: the earlier stages', then one per output rail (its strongest; the PII
        rail's with the entity types and the count of distinct new values over all pieces)."""
        merged: dict[str, Verdict] = {}
        for v in self._verdicts:
            best = merged.get(v.rail)
            if best is None or _ORDER[v.action] > _ORDER[best.action] or (
                    v.action == best.action and _worse(v, best)):
                merged[v.rail] = v
        if "pii" in merged and merged["pii"].details.get("count") and self._seen:
            # Distinct values, as outside a stream: every new value's placeholder is in self._seen once, however
            # many pieces it appeared in.
            merged["pii"] = merged["pii"].model_copy(update={"details": {
                "entities": sorted({_label(p) for p in self._seen}), "count": len(self._seen)}})
        return GuardSummary(verdicts=[*self._state.verdicts, *merged.values()],
                            blocked=self._state.blocked or self.blocked, deferred=self._deferred)

    def _score_sentences(self, *, final: bool) -> None:
        """Toxicity over the sentences that ended (all of it at the end, or past MAX_HELD_CHARS)."""
        cut = len(self._sentence) if final or len(self._sentence) >= MAX_HELD_CHARS else _last_boundary(
            self._sentence)
        done, self._sentence = self._sentence[:cut], self._sentence[cut:]
        if done.strip():
            self._add([rails.toxicity_verdict(done, self._policy)])

    def _check(self, piece: str) -> str:
        if not piece:
            return ""
        released = self._raw[:len(self._raw) - len(self._held) - len(piece)]
        text, state = rails.check_output(piece, self._state, passages=self._passages, final=False,
                                         system_prompt=self._system_prompt, seen=self._seen,
                                         canary_text=self._leak.tail(self._raw),
                                         context=_context(released), toxicity=False)
        self._add(state.verdicts[len(self._state.verdicts):])
        return "" if self.blocked is not None else text

    def _add(self, verdicts: list[Verdict]) -> None:
        self._verdicts.extend(verdicts)
        if self.blocked is None:
            self.blocked = next((v for v in verdicts if v.action == "block"), None)


class _LeakTail:
    """What the canary rail reads at a release: the end of everything generated so far that a leak new
    since the last release can lie in. Such a leak ends in the new text and is no longer than what it
    leaks, so the tail is the new text's words plus the prompt's word count before them (the prompt
    check compares words), or its skeleton characters plus the canary's (the canary check compares
    skeletons), whichever reaches further back. Reading everything at every release cost the square of
    the answer's length (once per model chunk); a leak seen at an earlier release keeps its score in the
    verdicts, whose strongest the summary reports."""

    def __init__(self, canary: str | None, system_prompt: str | None) -> None:
        self._prompt_words = len(_LEAK_WORD.findall(system_prompt.lower())) if system_prompt else 0
        self._canary_chars = _skeleton_len(canary) if canary else 0
        self._read = 0  # how much of the text the last release's check covered
        self._starts: list[int] = []  # where each word of the text starts (the last one may still grow)

    def tail(self, text: str) -> str:
        new = self._read
        self._read = len(text)
        scan = self._starts.pop() if self._starts else 0  # the last word may have grown: found again
        new_words = 0
        for match in _LEAK_WORD.finditer(text, scan):
            self._starts.append(match.start())
            new_words += match.end() > new
        start = len(text)
        if self._prompt_words:
            back = self._prompt_words + new_words
            start = self._starts[-back] if back <= len(self._starts) else 0
        if self._canary_chars:
            start = min(start, _skeleton_start(text, self._canary_chars + _skeleton_len(text[new:])))
        return text[start:]


def _skeleton_len(text: str) -> int:
    return len(_NOT_ALNUM.sub("", text.lower()))


def _skeleton_start(text: str, chars: int) -> int:
    """Where the end of `text` that holds `chars` skeleton characters (as the canary check sees it) starts."""
    i = len(text)
    while i > 0 and chars > 0:
        i -= 1
        chars -= _skeleton_len(text[i])
    return i


def _context(released: str) -> str:
    """The end of the released text, from a word's start (half a word would read as a word of its own)."""
    if len(released) <= CONTEXT_CHARS:
        return released
    tail = released[-CONTEXT_CHARS:]
    space = tail.find(" ")
    return tail[space + 1:] if space >= 0 else tail


def _label(placeholder: str) -> str:
    match = PLACEHOLDER.fullmatch(placeholder)
    return match.group(1) if match else "PII"


def _last_boundary(text: str) -> int:
    end = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
    return end


def _worse(a: Verdict, b: Verdict) -> bool:
    # Groundedness: a lower support is worse; every other rail: a higher score.
    return a.score < b.score if a.rail == "groundedness" else a.score > b.score
