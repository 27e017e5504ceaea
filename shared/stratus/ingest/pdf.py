"""PDF -> title and one run of blocks per page, with pypdf (imported on first use)."""

from __future__ import annotations

import io
import re

from stratus.errors import ExtractionFailed
from stratus.ingest.blocks import Block, ExtractedDocument, paragraphs

_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")
_LINE_BREAK = re.compile(r"(?<!\n)\n(?!\n)")


def extract_pdf(data: bytes) -> ExtractedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionFailed("the PDF is encrypted", field="content")
        meta_title = (reader.metadata.title if reader.metadata else None) or None
        pages = [page.extract_text() or "" for page in reader.pages]
    except ExtractionFailed:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as err:
        # pypdf reports damaged files with its own errors and, for some damage, with built-in ones.
        raise ExtractionFailed(f"unreadable PDF: {err}", field="content") from None

    blocks: list[Block] = []
    for number, text in enumerate(pages, start=1):
        text = _HYPHEN_BREAK.sub(r"\1\2", text.replace("\r\n", "\n"))
        # Lines inside a paragraph end with single newlines; blank lines separate paragraphs.
        for para in paragraphs(_LINE_BREAK.sub(" ", text)):
            blocks.append(Block(para, (), number))
    title = str(meta_title).strip() if meta_title and str(meta_title).strip() else None
    if title is None:
        first = next((line.strip() for text in pages for line in text.split("\n") if line.strip()), None)
        title = first[:200] if first else None
    return ExtractedDocument("pdf", title, blocks, page_count=len(pages))
