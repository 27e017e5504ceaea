"""Output rails that need no model: system-prompt leak detection.

Two complementary checks:
- a canary: a random token placed in the system prompt. It means nothing to a user, so its appearance in
  an answer is proof the prompt leaked. Models asked to "repeat everything above" often reformat what they
  repeat (spaces between letters, upper case, hyphens dropped, one token per line), so matching is done on
  the alphanumeric skeleton of both texts, not on the literal string.
- a verbatim-overlap score for prompts that carry no canary (or a model that drops it): the longest run of
  words the answer shares with the system prompt, as a share of the prompt's length. A short prompt quoted
  whole scores 1.0; an answer that happens to share a common phrase scores near 0.

Groundedness (which needs the embedder) lives in stratus.guard.grounding.
"""

from __future__ import annotations

import re
import secrets
from difflib import SequenceMatcher

CANARY_PREFIX = "stratus-canary-"
_CANARY_HEX_CHARS = 16  # 64 random bits: a chance match in an answer is not a concern
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_CANARY = re.compile(r"^stratus-canary-[0-9a-f]{8,64}$")
_WORD = re.compile(r"\w+")


def new_canary() -> str:
    """A fresh canary for one system prompt, e.g. "stratus-canary-3f9c0a1be27d4c55".

    Lower-case hex and hyphens only: it survives any prompt template and tokenises into ordinary pieces.
    """
    return CANARY_PREFIX + secrets.token_hex(_CANARY_HEX_CHARS // 2)


def _skeleton(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def leaks_canary(text: str, canary: str) -> bool:
    """True when `text` contains `canary`, also spaced out, re-cased or split by punctuation/newlines.

    The random part alone counts too: a model that strips the "stratus-canary-" prefix still leaked it.
    """
    if not _CANARY.match(canary):
        raise ValueError(f"canary: expected a value from new_canary(), got {canary!r}")
    skeleton = _skeleton(text)
    random_part = canary[len(CANARY_PREFIX):]
    return _skeleton(canary) in skeleton or random_part in skeleton


def leaks_system_prompt(text: str, system_prompt: str) -> float:
    """Longest word span `text` shares verbatim with `system_prompt`, divided by the prompt's length in words
    (0..1). Case and punctuation are ignored. Callers pick the threshold per policy: a span of a few words is
    ordinary ("answer the question"), a third of the prompt is not."""
    prompt_words = _WORD.findall(system_prompt.lower())
    if not prompt_words:
        return 0.0
    answer_words = _WORD.findall(text.lower())
    if not answer_words:
        return 0.0
    # autojunk off: frequent words ("the") must still extend a match, or a quoted prompt scores low.
    matcher = SequenceMatcher(None, prompt_words, answer_words, autojunk=False)
    match = matcher.find_longest_match(0, len(prompt_words), 0, len(answer_words))
    return match.size / len(prompt_words)
