"""Value types shared by the PII rail and its detector adapters (no heavy imports)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

# The entity types the PII rail knows; each is also the label inside its placeholder (<EMAIL_1>).
ENTITIES: tuple[str, ...] = (
    "CREDIT_CARD",
    "IBAN",
    "EMAIL",
    "PHONE",
    "US_SSN",
    "IP_ADDRESS",
    "PERSON",
    "LOCATION",
)

# One word of a name, in any script: letters with inner apostrophes, hyphens or full stops ("O'Brien",
# "Jean-Luc", "J.R."), maybe a final full stop ("Dr."). The detector adapter and the stream window share it,
# so a name the detector would keep is never released in part ("Łukasz", "Émile" as well as "Ada").
_NAME_TOKEN = re.compile(r"[^\W\d_][^\W\d_'’.-]*(?:['’.-][^\W\d_]*)*\.?")


# Lower-case words that join a name's capitalised ones ("Leonardo da Vinci", "Ludwig van Beethoven"): inside
# a name they belong to it, so a stream holds them with the run and the detector's span keeps them.
NAME_PARTICLES = frozenset({"van", "de", "von", "da", "di", "del", "der", "du", "le", "la", "bin", "ibn", "al"})


def name_token(token: str) -> bool:
    """A capitalised word that may belong to a name: an uppercase first letter (any script), no digits."""
    return token[:1].isupper() and _NAME_TOKEN.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected entity: `text` is `source[start:end]`; `score` is the recognizer's confidence."""

    type: str
    start: int
    end: int
    score: float
    text: str


@dataclass(slots=True)
class Redaction:
    """Text with PII replaced by placeholders, and placeholder -> original value for `restore`.

    The mapping is the request's secret: it never goes to a provider or into a trace."""

    text: str
    mapping: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


class Detector(Protocol):
    def __call__(self, text: str, entities: Sequence[str]) -> list[Finding]: ...
