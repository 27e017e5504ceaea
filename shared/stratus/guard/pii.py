"""PII rail: detect entities, redact them into reversible placeholders, restore, re-redact output.

Flow in a request: `redact(prompt)` before the provider sees the text -> the model answers in terms
of `<PERSON_1>` etc. -> `reredact(answer, mapping)` masks any original value the answer carries
(e.g. quoted from a retrieved chunk) and any new PII -> `restore(answer, input_mapping)` where policy
allows. Restoring with the *input* mapping gives back only what the caller sent; PII that first
appeared in the output keeps its placeholder.

Detection is Presidio + spaCy (see pii_presidio); this module is pure Python so the placeholder
logic is testable with any `Detector`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from stratus.errors import InvalidInput, TooLarge
from stratus.guard.pii_types import ENTITIES, Detector, Finding, Redaction

__all__ = ["ENTITIES", "Finding", "Redaction", "detect", "once_per_text", "redact", "reredact", "restore"]

# Keep what the recognizers report at their base confidence (phones without context score 0.4),
# drop the weak context-only patterns (Presidio's loosest SSN shapes score 0.05).
MIN_SCORE = 0.4
# spaCy is linear in length but a guard call must stay bounded; callers chunk longer text.
MAX_CHARS = 100_000
# Known values shorter than this are not swept for elsewhere in the text ("Al", "Jo" are words too).
MIN_SWEEP_CHARS = 3

PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*?)_(\d+)>")
# Besides an uppercase letter (any script: see _may_hold), what a value the recognizers report needs: a
# number has digits, an email an @, an IPv6 address a colon.
_MAY_HOLD = re.compile(r"[0-9@:]")


def detect(
    text: str,
    entities: Sequence[str] | None = None,
    *,
    min_score: float = MIN_SCORE,
    detector: Detector | None = None,
) -> list[Finding]:
    """Non-overlapping findings in `text`, in order; on overlap the higher score (then longer) wins."""
    if not isinstance(text, str):
        raise InvalidInput("text must be a string", field="text")
    if len(text) > MAX_CHARS:
        raise TooLarge(f"text has {len(text)} characters; the PII rail takes at most {MAX_CHARS}", field="text")
    wanted = _entities(entities)
    if not text.strip() or not wanted:
        return []
    run = detector or _presidio
    found = [f for f in run(text, wanted) if f.score >= min_score and f.type in wanted]
    return _non_overlapping(found)


def redact(
    text: str,
    mapping: dict[str, str] | None = None,
    *,
    entities: Sequence[str] | None = None,
    min_score: float = MIN_SCORE,
    detector: Detector | None = None,
    context: str = "",
) -> Redaction:
    """Replace PII with placeholders. Pass the request's mapping so far to keep numbering and reuse
    placeholders across messages: the same value always gets the same placeholder in one request.
    The caller's mapping is not modified; the returned one extends it. `context` is text that came just
    before `text` and was handled already (a stream's released part): the detector reads it (a name is
    found by the words around it) but only what falls in `text` is redacted."""
    if context and not _may_hold(text):
        findings: list[Finding] = []  # a streamed piece of lower-case words: nothing for the detector
    else:
        findings = _after(detect(context + text, entities, min_score=min_score, detector=detector), context)
    mapping = dict(mapping or {})
    placeholders = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
    findings = [f for f in findings if not _overlaps_any(f.start, f.end, placeholders)]
    known = _known_values(mapping, findings)
    swept = _sweep(text, known, taken=placeholders + [(f.start, f.end) for f in findings])
    spans = sorted(findings + swept, key=lambda f: f.start)

    index = {_key(_label(p), value): p for p, value in mapping.items()}
    last = _last_numbers(mapping)
    out: list[str] = []
    cursor = 0
    for f in spans:
        key = _key(f.type, f.text)
        placeholder = index.get(key)
        if placeholder is None:
            last[f.type] = last.get(f.type, 0) + 1
            placeholder = f"<{f.type}_{last[f.type]}>"
            mapping[placeholder] = f.text
            index[key] = placeholder
        out.append(text[cursor : f.start])
        out.append(placeholder)
        cursor = f.end
    out.append(text[cursor:])
    return Redaction("".join(out), mapping, spans)


def reredact(
    text: str,
    mapping: dict[str, str],
    *,
    entities: Sequence[str] | None = None,
    min_score: float = MIN_SCORE,
    detector: Detector | None = None,
    context: str = "",
) -> Redaction:
    """Redact model output: every original value the request already knows goes back behind its
    placeholder (wherever it appears), new PII gets new placeholders, existing placeholders stay."""
    return redact(text, mapping, entities=entities, min_score=min_score, detector=detector, context=context)


def restore(text: str, mapping: dict[str, str]) -> str:
    """Put originals back for placeholders found in `mapping`; unknown placeholders are left as they
    are. One pass, so a restored value that looks like a placeholder is never expanded again."""
    return PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def once_per_text(detector: Detector | None = None) -> Detector:
    """`detector` (default: Presidio) remembering what it found in each text, for one request's scan: a
    workflow's query is its last user message, which would otherwise go through NER twice. Scoped to the
    caller, never process-wide: a shared cache would let one tenant time whether another sent a text."""
    run = detector or _presidio
    found: dict[tuple[str, tuple[str, ...]], list[Finding]] = {}

    def remembered(text: str, entities: Sequence[str]) -> list[Finding]:
        key = (text, tuple(entities))
        if key not in found:
            found[key] = run(text, entities)
        return list(found[key])

    return remembered


def _may_hold(text: str) -> bool:
    """Whether `text` may hold a value the recognizers report. Without an uppercase letter in any script (a
    name is capitalised: pii_presidio keeps capitalised PERSON spans only, "Łukasz" as well as "Ada"), a
    digit, an @ or a colon it holds none: a stream's pieces (redact with `context`) skip the detector then;
    known values are still swept."""
    return text != text.lower() or _MAY_HOLD.search(text) is not None


def _presidio(text: str, entities: Sequence[str]) -> list[Finding]:
    from stratus.guard import pii_presidio  # heavy: Presidio and spaCy load on first use

    return pii_presidio.analyze(text, entities)


def _entities(entities: Sequence[str] | None) -> tuple[str, ...]:
    if entities is None:
        return ENTITIES
    if isinstance(entities, str):
        raise InvalidInput("entities must be a list of entity names, not a string", field="entities")
    unknown = sorted(set(entities) - set(ENTITIES))
    if unknown:
        raise InvalidInput(f"unknown PII entities {unknown}; known: {list(ENTITIES)}", field="entities")
    return tuple(e for e in ENTITIES if e in entities)


def _after(findings: list[Finding], context: str) -> list[Finding]:
    """Findings in `context + text`, as spans of `text`: one that began in the context keeps its part here."""
    if not context:
        return findings
    n = len(context)
    return [Finding(f.type, max(f.start, n) - n, f.end - n, f.score, f.text[max(n - f.start, 0):])
            for f in findings if f.end > n]


def _non_overlapping(findings: Iterable[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        if not any(f.start < k.end and k.start < f.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def _overlaps_any(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in spans)


def _known_values(mapping: dict[str, str], findings: list[Finding]) -> dict[str, str]:
    """original value -> entity type, for every value this request has already judged PII."""
    known = {value: _label(p) for p, value in mapping.items()}
    known.update({f.text: f.type for f in findings})
    return {v: t for v, t in known.items() if len(v.strip()) >= MIN_SWEEP_CHARS}


def _sweep(text: str, known: dict[str, str], *, taken: list[tuple[int, int]]) -> list[Finding]:
    """Other literal occurrences of known values (a name NER caught once but not twice, an original
    value the model echoed), outside spans already taken; whole words only, longest value first."""
    if not known:
        return []
    values = sorted(known, key=len, reverse=True)
    # One word-boundary check around the alternation, not one per value: the regex engine then tests the
    # values only where a word starts (a name-dense text has dozens of known values).
    pattern = re.compile(rf"(?<!\w)(?:{'|'.join(re.escape(v) for v in values)})(?!\w)")
    found: list[Finding] = []
    for m in pattern.finditer(text):
        if not _overlaps_any(m.start(), m.end(), taken):
            found.append(Finding(known[m.group(0)], m.start(), m.end(), 1.0, m.group(0)))
    return found


def _label(placeholder: str) -> str:
    m = PLACEHOLDER.fullmatch(placeholder)
    if m is None:
        raise InvalidInput(f"mapping key {placeholder!r} is not a placeholder like <EMAIL_1>", field="mapping")
    return m.group(1)


def _key(entity: str, value: str) -> tuple[str, str]:
    """Identity of a value within a request: emails ignore case, numbers ignore their separators."""
    if entity == "EMAIL":
        return entity, value.strip().lower()
    if entity in {"CREDIT_CARD", "IBAN", "PHONE", "US_SSN"}:
        return entity, re.sub(r"[^0-9A-Za-z+]", "", value).upper()
    return entity, " ".join(value.split())


def _last_numbers(mapping: dict[str, str]) -> dict[str, int]:
    """Entity -> the highest placeholder number the mapping uses (the next value of that type gets one more)."""
    last: dict[str, int] = {}
    for p in mapping:
        if m := PLACEHOLDER.fullmatch(p):
            last[m.group(1)] = max(last.get(m.group(1), 0), int(m.group(2)))
    return last
