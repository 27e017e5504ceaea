"""How much of a streamed answer's end the output rails must still hold back.

The rails can only judge a value whole: a placeholder (`<EMAIL_1>` is restored, `<EMA` is not yet
anything), the canary (its first half says nothing, and once released cannot be taken back) and a PII
value (an email, a phone number or a name that the next chunk may still extend). Everything before the
earliest such candidate at the end of the text can go to the caller now; the candidate waits for the
chunk that completes or ends it. What counts as a candidate:

- a partial placeholder: `<`, `<PERS`, `<PERSON_1` (not yet closed by `>`);
- a partial canary: the longest end of the text whose letters and digits (the canary rail compares
  skeletons, so spacing and case do not hide it) begin the canary or its random part;
- the trailing word: the characters an email, a number or an address can be made of, not yet ended by
  a space or by punctuation no PII value contains (`Echo:`, `yes,` end their word). ASCII only: the
  recognisers' numbers and domains are ASCII, and a CJK answer (no spaces) would otherwise wait for the
  window's bound;
- a trailing run of digit groups (`+44 20 7946`, `4111 1111`, `GB82 WEST 1234`): the next group may still
  belong to it;
- a trailing run of capitalised words (`Ada`, `Ada Lovelace`, `Łukasz Żuk`: an uppercase first letter in
  any script, the same word shape the detector keeps as a name), with the particles that join a name's
  words after one of them (`Ludwig van`): a name may have more words to come, and a name released word by
  word would leak its first name before NER sees the whole.

The PII candidates are bounded by WINDOW_CHARS (a URL or a long run of Title Case is released past it);
placeholders and the canary are short and always held whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stratus.guard.output import CANARY_PREFIX
from stratus.guard.pii import PLACEHOLDER
from stratus.guard.pii_types import NAME_PARTICLES, name_token

# The PII candidates are held back at most this far (a 90-character email is long; so is a 12-word name).
WINDOW_CHARS = 96

_PLACEHOLDER_START = re.compile(r"<(?:[A-Z][A-Z_]*\d*)?\Z")
# Characters of an email (local part and domain), an IP address (v4 and v6) or a number with separators.
_WORD = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~@\-]+\Z")
_TOKEN = re.compile(r"\S+")
_DIGIT_GROUP = re.compile(r"[+(]?[A-Za-z0-9]*\d[A-Za-z0-9().\-/:]*|[A-Z]{4}")  # "(415)", "555-0199", "WEST"
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def hold_from(text: str, canary: str | None = None, *, pii: bool = True) -> int:
    """The index in `text` from which the rest must be held back (len(text): nothing to hold). `canary`:
    the request's canary when its rail is on; `pii`: whether the PII rail may change or stop the text."""
    end = len(text)
    cut = end
    if pii:
        cut = max(min(_word(text), _run(text, _DIGIT_GROUP.fullmatch), _name_run(text)), end - WINDOW_CHARS)
        placeholder = _PLACEHOLDER_START.search(text, max(0, end - 64))
        if placeholder is not None:
            cut = min(cut, placeholder.start())
    if canary:
        cut = min(cut, _canary_prefix(text, canary))
    # Never inside a whole placeholder: "<EMAIL_" released and "1>" held would both go out unrestored.
    for match in PLACEHOLDER.finditer(text, max(0, cut - 64)):
        if match.start() < cut < match.end():
            return match.start()
    return cut


def _word(text: str) -> int:
    match = _WORD.search(text, max(0, len(text) - WINDOW_CHARS))
    return match.start() if match else len(text)


def _capitalised(token: str) -> bool:
    """A word of a name as the detector sees one ("Ada", "O'Brien", "Łukasz"); with a final full stop only
    an initial or a title ("J.", "Dr.", "Mrs."): "Sure." ends a sentence."""
    return name_token(token) and (not token.endswith(".") or len(token) <= 4)


def _name_run(text: str) -> int:
    """Where the trailing run of a name's words starts: capitalised words, and particles after one ("Ludwig
    van" waits for "Beethoven": released alone, "Ludwig" would be judged without the rest of the name)."""
    start = _run(text, lambda t: _capitalised(t) or t in NAME_PARTICLES)
    for match in _TOKEN.finditer(text, start):
        if _capitalised(match.group(0)):
            return match.start()  # a run opens with a capital: "met la" is not a name's start
    return len(text)


def _run(text: str, token: Callable[[str], object]) -> int:
    """Where the trailing run of `token`s starts: tokens one space apart, the last at the end of the text
    (spaces after it are fine: the next word may still join the run, a newline ends it)."""
    start = len(text)
    if text[len(text.rstrip(" ")):] != text[len(text.rstrip()):]:
        return start  # a newline or tab after the last token: the run is over
    tokens = list(_TOKEN.finditer(text, max(0, len(text) - WINDOW_CHARS)))
    for i in range(len(tokens) - 1, -1, -1):
        t = tokens[i]
        if not token(t.group(0)):
            break
        if i < len(tokens) - 1 and text[t.end():tokens[i + 1].start()] != " ":
            break
        start = t.start()
    return start


def _canary_prefix(text: str, canary: str) -> int:
    """The start of the longest end of `text` whose skeleton begins the canary's (or its random part's)."""
    targets = (_NOT_ALNUM.sub("", canary.lower()), canary[len(CANARY_PREFIX):].lower())
    longest = max(len(t) for t in targets)
    cut = len(text)
    skeleton = ""
    i = len(text)
    while i > 0 and len(skeleton) <= longest:
        i -= 1
        ch = text[i].lower()
        if not ch.isascii() or not ch.isalnum():
            continue
        skeleton = ch + skeleton
        if any(t.startswith(skeleton) for t in targets):
            cut = i
    return cut
