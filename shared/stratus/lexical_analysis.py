"""What the lexical index sees, in one place: the text a chunk is indexed from and the text a query is
matched with. Both go through `normalise` and then the `stratus_english` text search configuration
(`TS_CONFIG`, migration 0014: PostgreSQL's default parser and English stop words, words lower-cased but
not stemmed), so a chunk and a query are always analysed alike; change either only here (and re-index).

`normalise` keeps identifiers whole *and* findable by their parts. The default parser splits
`AUTH_KEY_EXPIRED` on the underscores into three common words and keeps `TopologicalSorter` as one
opaque word; written with hyphens (`AUTH-KEY-EXPIRED`, `Topological-Sorter`, `urllib-parse`) the parser
emits the whole compound as one lexeme plus each part, so an exact look-up matches the rare compound
and a query in plain words still matches the parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

TS_CONFIG = "stratus_english"

# snake_case / SCREAMING_SNAKE, paths and dotted names: word characters joined by '_', '/' or '.', with a
# letter after a dot (so that versions and decimals such as v2.3.1 or 0.75 stay as they are). The parser
# would keep `name/value`, `json.org` or `self.assertEqual` as one opaque file or host token.
_JOINED = re.compile(r"(?<=[A-Za-z0-9])(?:_+|/|\.(?=[A-Za-z_]))(?=[A-Za-z0-9])")
# camelCase and PascalCase humps: a lower-case letter or digit followed by an upper-case one
# (`TopologicalSorter`, `lruCache`), or an acronym before a capitalised word (`HTTPServer`).
_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z])")


def normalise(text: str) -> str:
    """`text` with identifiers written as hyphenated compounds; everything else unchanged."""
    return _HUMP.sub("-", _JOINED.sub("-", text))


def chunk_text(title: str | None, heading_path: Sequence[str], text: str) -> str:
    """The text a chunk is indexed from, before analysis: the document title and heading path give every
    chunk its context words (the H1 is often the title, so a repeated context line counts once)."""
    context = dict.fromkeys(p for p in [title, *heading_path] if p)
    return " \n".join([*context, text])


def indexed_text(title: str | None, heading_path: Sequence[str], text: str) -> str:
    """What goes into `to_tsvector(TS_CONFIG, ...)` for a chunk."""
    return normalise(chunk_text(title, heading_path, text))


def query_text(query: str) -> str:
    return normalise(query)


def query_terms(df: Mapping[str, int]) -> dict[str, int]:
    """The query lexemes to score, from those present in the corpus (with their document frequencies).

    A query compound that occurs in the corpus (`check-output` from `check_output`) is what the user
    asked for: its parts (`check`, `output`) are left out, so that chunks which merely use the common
    parts often do not outrank the exact identifier. A compound the corpus lacks leaves its parts in.
    """
    parts = {p for term in df if "-" in term for p in term.split("-") if p}
    return {term: n for term, n in df.items() if term not in parts}
