"""Text extraction: bytes of a .txt, .md, .html or .pdf file -> title and structured blocks.

The result is an ExtractedDocument of Blocks (stratus.ingest.blocks, shared with the html and pdf
extractors and the chunker). pypdf and beautifulsoup4 are imported only when a document of their type
arrives.
"""

from __future__ import annotations

import codecs
import re
from pathlib import PurePosixPath

from stratus.errors import ExtractionFailed, TooLarge, Unsupported
from stratus.ingest.blocks import Block, ExtractedDocument, paragraphs

KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
         ".html": "html", ".htm": "html", ".pdf": "pdf"}
_CONTENT_TYPES = {"text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown",
                  "text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf"}


def detect_kind(key: str, content_type: str | None = None) -> str:
    """The document type from the key's extension, else from the object's Content-Type."""
    kind = KINDS.get(PurePosixPath(key).suffix.lower())
    if kind is None and content_type:
        kind = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
    if kind is None:
        raise Unsupported(
            f"unsupported document type for {key!r} (supported: {', '.join(sorted(KINDS))})", field="key"
        )
    return kind


def extract(
    data: bytes, key: str, *, content_type: str | None = None, max_bytes: int | None = None
) -> ExtractedDocument:
    """Extract a document; raises Unsupported, TooLarge or ExtractionFailed (all permanent)."""
    kind = detect_kind(key, content_type)
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge(f"document is {len(data)} bytes; the limit is {max_bytes}", field="size")
    if kind == "pdf":
        from stratus.ingest.pdf import extract_pdf

        doc = extract_pdf(data)
    elif kind == "html":
        from stratus.ingest.html import extract_html

        doc = extract_html(decode_text(data, _html_charset(data)))
    elif kind == "markdown":
        doc = extract_markdown(decode_text(data))
    else:
        doc = extract_plain(decode_text(data))
    if not doc.blocks:
        raise ExtractionFailed("the document contains no text", field="content")
    return doc


# --- decoding ----------------------------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def decode_text(data: bytes, declared: str | None = None) -> str:
    """BOM, then a declared charset, then strict UTF-8, then cp1252 / latin-1 (which cannot fail)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _clean(data[len(bom):].decode(encoding, errors="replace"))
    candidates = [c for c in (declared, "utf-8", "cp1252") if c]
    for encoding in candidates:
        try:
            return _clean(data.decode(encoding))
        except (UnicodeDecodeError, LookupError):
            continue
    return _clean(data.decode("latin-1"))


def _clean(text: str) -> str:
    if "\x00" in text:
        raise ExtractionFailed("the file looks binary (NUL bytes in text)", field="content")
    return text.replace("\r\n", "\n").replace("\r", "\n")


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)


def _html_charset(data: bytes) -> str | None:
    m = _META_CHARSET.search(data[:4096])
    if not m:
        return None
    name = m.group(1).decode("ascii", "ignore")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


# --- plain text and markdown -------------------------------------------------------------------------

def extract_plain(text: str) -> ExtractedDocument:
    blocks = [Block(p) for p in paragraphs(text)]
    title = blocks[0].text.split("\n", 1)[0][:200] if blocks else None
    return ExtractedDocument("text", title, blocks)


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_FRONT_TITLE = re.compile(r"""^title:\s*["']?(.+?)["']?\s*$""", re.MULTILINE)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def extract_markdown(text: str) -> ExtractedDocument:
    """Headings (ATX and setext) set the heading path; fenced code stays verbatim; links keep their text."""
    title = None
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end > 0:
            m = _FRONT_TITLE.search(text[4:end])
            title = m.group(1).strip() if m else None
            text = text[end + 4:].split("\n", 1)[1] if "\n" in text[end + 4:] else ""
    text = _HTML_COMMENT.sub("", text)
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    buf: list[str] = []
    in_fence = False

    def flush() -> None:
        heads = tuple(h for _, h in path)
        for para in paragraphs("\n".join(buf)):
            blocks.append(Block(para if in_fence else _LINK.sub(r"\1", para), heads))
        buf.clear()

    def heading(level: int, name: str) -> None:
        nonlocal title
        flush()
        name = _LINK.sub(r"\1", name).strip()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, name))
        if title is None and level == 1:
            title = name

    for line in text.split("\n"):
        if _FENCE.match(line):
            if in_fence:
                buf.append(line)
                flush()
                in_fence = False
            else:
                flush()
                in_fence = True
                buf.append(line)
            continue
        if in_fence:
            buf.append(line if line.strip() else "\u2063")  # keep code blocks as one paragraph
            continue
        m = _ATX.match(line)
        if m:
            heading(len(m.group(1)), m.group(2))
            continue
        if _SETEXT.match(line) and buf and buf[-1].strip():
            underline = line.strip()[0]
            name = buf.pop().strip()
            if underline == "=" or name:
                heading(1 if underline == "=" else 2, name)
                continue
        buf.append(line)
    flush()
    blocks = [Block(b.text.replace("\u2063", ""), b.heading_path) for b in blocks]
    if title is None and blocks:
        title = blocks[0].text.split("\n", 1)[0][:200]
    return ExtractedDocument("markdown", title, [b for b in blocks if b.text.strip()])
