"""What extraction produces: a document's title and blocks. A block is a paragraph with the heading path
above it (and its page, for PDFs); the chunker packs blocks into chunks and never merges blocks from
different sections. Shared by the extractors (extract, html, pdf) and the chunker, so no extractor imports
another."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Block:
    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class ExtractedDocument:
    kind: str
    title: str | None
    blocks: list[Block] = field(default_factory=list)
    page_count: int | None = None

    def canonical_text(self) -> str:
        """Text plus structure, so that moving a paragraph under another heading counts as a change."""
        parts = [self.title or ""]
        for b in self.blocks:
            parts.append(f"\x1e{b.page or ''}\x1f{chr(0x1f).join(b.heading_path)}\x1d{b.text}")
        return "\n".join(parts)

    def content_hash(self, salt: str = "") -> str:
        return hashlib.sha256((salt + "\n" + self.canonical_text()).encode("utf-8")).hexdigest()


_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


def paragraphs(text: str) -> list[str]:
    out = []
    for para in _BLANK_LINES.split(text):
        para = _SPACES.sub(" ", para).strip()
        if para:
            out.append(para)
    return out
