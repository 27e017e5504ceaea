"""HTML -> title and blocks with beautifulsoup4 on the lxml parser (imported on first use; ~2x the stdlib parser).

Headings h1-h6 set the heading path; script, style, nav, footer and similar chrome are dropped.
"""

from __future__ import annotations

import re

from stratus.ingest.blocks import Block, ExtractedDocument, paragraphs

_DROP = ("script", "style", "nav", "footer", "noscript", "template", "svg", "iframe", "form", "head")
_BLOCKS = ("p", "div", "section", "article", "main", "aside", "header", "li", "ul", "ol", "dl", "dt", "dd",
           "blockquote", "pre", "table", "tr", "td", "th", "figure", "figcaption", "hr", "address", "details",
           "summary")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_MARK = "\x02"  # starts a heading line in the flattened text; never occurs in decoded text we keep
_WS = re.compile(r"\s+")


def extract_html(text: str) -> ExtractedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text.replace(_MARK, " "), "lxml")
    title = _WS.sub(" ", soup.title.get_text()).strip() if soup.title else ""
    for tag in soup.find_all(_DROP):
        tag.decompose()
    # Flatten to text with blank lines around blocks and a marker line per heading, then read it back.
    for tag in soup.find_all(_HEADINGS):
        name = _WS.sub(" ", tag.get_text(" ")).strip()
        tag.replace_with(f"\n\n{_MARK}{tag.name[1]}{name}\n\n" if name else "\n\n")
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    flat = soup.get_text()

    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    first_h1 = None
    for para in paragraphs(flat):
        if para.startswith(_MARK):
            level, name = int(para[1]), para[2:].strip()
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, name))
            if level == 1 and first_h1 is None:
                first_h1 = name
            continue
        blocks.append(Block(_WS.sub(" ", para), tuple(h for _, h in path)))
    return ExtractedDocument("html", title or first_h1 or None, blocks)
