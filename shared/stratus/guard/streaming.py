"""Output rails on a streamed answer: nothing reaches the caller before the rails have seen it.

Text is held back until a sentence (or line) ends, then that sentence goes through the output rails
(canary over everything generated so far, toxicity, PII re-redaction and placeholder restore) and is
released. A placeholder or a canary split across model chunks is therefore always checked whole. What
cannot be judged sentence by sentence, groundedness, runs on the whole answer at the end: the caller
has the text by then, so a block there ends the stream with an error event instead of the final chunk.
The cost is latency to the first byte of each sentence, not to the end of the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stratus.guard import rails
from stratus.llm.types import ContextPassage
from stratus.workflow_state import GuardState, GuardSummary, Verdict

# The end of a sentence or line: what follows can be checked on its own.
_BOUNDARY = re.compile(r"[.!?:;](?=\s)\s*|\n+")
# Held text is released anyway past this size (a list or a table with no sentence end in sight).
MAX_HELD_CHARS = 600
_ORDER = {"pass": 0, "flag": 1, "fence": 2, "drop": 2, "redact": 3, "block": 4}


class GuardedStream:
    def __init__(self, state: GuardState, passages: Sequence[ContextPassage] = (),
                 system_prompt: str | None = None) -> None:
        self._state = state
        self._passages = list(passages)
        self._system_prompt = system_prompt
        self._held = ""
        self._raw = ""  # everything the model said (the canary rail reads it whole)
        self._seen: dict[str, str] = {}  # placeholders given to new PII in earlier sentences
        self._verdicts: list[Verdict] = []
        self._policy = rails.policy_of(state)
        self.blocked: Verdict | None = None

    def feed(self, text: str) -> str:
        """Take a model chunk; return the text that may go to the caller now ('' while a sentence is open
        or once blocked)."""
        if self.blocked is not None or not text:
            return ""
        self._held += text
        self._raw += text
        cut = _last_boundary(self._held)
        if cut == 0 and len(self._held) < MAX_HELD_CHARS:
            return ""
        if cut == 0:
            cut = len(self._held)
        piece, self._held = self._held[:cut], self._held[cut:]
        return self._check(piece)

    def finish(self, answer: str) -> str:
        """The held tail (checked), then the whole-answer rails; `answer` is the complete model text."""
        tail = self._check(self._held) if self._held and self.blocked is None else ""
        self._held = ""
        if self.blocked is None and self._passages and self._policy.enabled("groundedness"):
            self._add([rails.groundedness_verdict(answer, self._passages, self._policy)])
        return tail

    def summary(self) -> GuardSummary:
        """The request's verdicts: the earlier stages', then one per output rail (its strongest)."""
        merged: dict[str, Verdict] = {}
        for v in self._verdicts:
            best = merged.get(v.rail)
            if best is None or _ORDER[v.action] > _ORDER[best.action] or (
                    v.action == best.action and _worse(v, best)):
                merged[v.rail] = v
        return GuardSummary(verdicts=[*self._state.verdicts, *merged.values()],
                            blocked=self._state.blocked or self.blocked)

    def _check(self, piece: str) -> str:
        if not piece:
            return ""
        text, state = rails.check_output(piece, self._state, passages=self._passages, final=False,
                                         system_prompt=self._system_prompt, seen=self._seen, canary_text=self._raw)
        self._add(state.verdicts[len(self._state.verdicts):])
        return "" if self.blocked is not None else text

    def _add(self, verdicts: list[Verdict]) -> None:
        self._verdicts.extend(verdicts)
        if self.blocked is None:
            self.blocked = next((v for v in verdicts if v.action == "block"), None)


def _last_boundary(text: str) -> int:
    end = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
    return end


def _worse(a: Verdict, b: Verdict) -> bool:
    # Groundedness: a lower support is worse; every other rail: a higher score.
    return a.score < b.score if a.rail == "groundedness" else a.score > b.score
