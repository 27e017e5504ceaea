"""Text extraction for the four supported types, decoding, and the permanent-failure errors."""

from __future__ import annotations

import pytest

from stratus.errors import ExtractionFailed, TooLarge, Unsupported
from stratus.ingest.extract import decode_text, detect_kind, extract


def make_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF: one Helvetica text line per string, pages in order, optional Info title."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % p for p in page_ids), len(pages))
    )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        ops = [b"BT /F1 12 Tf 14 TL 72 720 Td"]
        for line in lines:
            escaped = (
                line.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
            )
            ops.append(b"(%s) Tj T*" % escaped)
        ops.append(b"ET")
        stream = b"\n".join(ops)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>"
            b" >> /Contents %d 0 R >>" % (page_ids[i] + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    info = None
    if title is not None:
        objects.append(b"<< /Title (%s) >>" % title.encode("latin-1"))
        info = len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    trailer = b"<< /Size %d /Root 1 0 R%s >>" % (len(objects) + 1, b" /Info %d 0 R" % info if info else b"")
    out += b"trailer\n%s\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref)
    return bytes(out)


def test_plain_text_paragraphs_and_title() -> None:
    doc = extract(b"Release notes\nfor v2\n\n\nFaster   ingest.\r\n\r\nFewer bugs.\n", "notes.txt")
    assert doc.kind == "text"
    assert doc.title == "Release notes"
    assert [b.text for b in doc.blocks] == ["Release notes\nfor v2", "Faster ingest.", "Fewer bugs."]


def test_markdown_front_matter_title_headings_and_code() -> None:
    md = (
        b'---\ntitle: "Operator guide"\nowner: ops\n---\n'
        b"# Install\n\nRun `make demo`. See [the docs](https://example.com).\n\n"
        b"## Keys\n\nRotate keys monthly.\n\n```sh\n# not a heading\n\nstratus keys rotate\n```\n\n"
        b"Upgrades\n--------\n\nRead the changelog.\n\n# Uninstall\n\nDelete the stack.\n"
    )
    doc = extract(md, "guide.md")
    assert doc.title == "Operator guide"
    assert [(b.heading_path, b.text) for b in doc.blocks] == [
        (("Install",), "Run `make demo`. See the docs."),
        (("Install", "Keys"), "Rotate keys monthly."),
        (("Install", "Keys"), "```sh\n# not a heading\n\nstratus keys rotate\n```"),
        (("Install", "Upgrades"), "Read the changelog."),
        (("Uninstall",), "Delete the stack."),
    ]


def test_markdown_title_falls_back_to_first_h1() -> None:
    doc = extract(b"Intro line.\n\n# Real Title\n\nBody.\n", "x.markdown")
    assert doc.title == "Real Title"
    assert doc.blocks[0].heading_path == ()


def test_html_title_headings_and_chrome_dropped() -> None:
    html = b"""<!doctype html><html><head><meta charset="windows-1252"><title> Pricing \x96 Stratus </title>
    <style>p { color: red }</style><script>track()</script></head><body>
    <nav><a href="/">Home</a></nav><h1>Plans</h1><p>Two <b>plans</b>:</p>
    <ul><li>Free</li><li>Team</li></ul><h2>Limits</h2><div>Up to 10 keys<br>per tenant.</div>
    <h3>Soft</h3><p>Warn at 80%.</p><h2>Billing</h2><p>Monthly.</p><footer>(c) 2025</footer></body></html>"""
    doc = extract(html, "pricing.htm")
    assert doc.title == "Pricing \u2013 Stratus"
    got = [(b.heading_path, b.text) for b in doc.blocks]
    assert got == [
        (("Plans",), "Two plans:"),
        (("Plans",), "Free"),
        (("Plans",), "Team"),
        (("Plans", "Limits"), "Up to 10 keys per tenant."),
        (("Plans", "Limits", "Soft"), "Warn at 80%."),
        (("Plans", "Billing"), "Monthly."),
    ]
    assert not any(w in " ".join(t for _, t in got) for w in ("Home", "track", "color", "(c)"))


def test_html_without_title_uses_h1() -> None:
    assert extract(b"<h1>Only heading</h1><p>text</p>", "a.html").title == "Only heading"


def test_pdf_pages_and_metadata_title() -> None:
    data = make_pdf([["Quarterly report", "Revenue grew."], ["Costs fell."]], title="Q3 Report")
    doc = extract(data, "reports/q3.pdf")
    assert doc.kind == "pdf" and doc.page_count == 2
    assert doc.title == "Q3 Report"
    assert [b.page for b in doc.blocks] == [1, 2]
    assert "Revenue grew." in doc.blocks[0].text and doc.blocks[1].text == "Costs fell."


def test_pdf_title_falls_back_to_first_line() -> None:
    doc = extract(make_pdf([["Design notes", "Body text."]]), "d.pdf")
    assert doc.title == "Design notes"


def test_corrupt_pdf_is_an_extraction_failure() -> None:
    data = make_pdf([["fine"]])
    with pytest.raises(ExtractionFailed):
        extract(data[: len(data) // 3] + b"\x00garbage" * 10, "broken.pdf")
    with pytest.raises(ExtractionFailed):
        extract(b"not a pdf at all", "fake.pdf")


def test_pdf_without_text_is_an_extraction_failure() -> None:
    with pytest.raises(ExtractionFailed, match="no text"):
        extract(make_pdf([[]]), "scan.pdf")


def test_unsupported_type_and_content_type_fallback() -> None:
    with pytest.raises(Unsupported, match="supported: "):
        extract(b"PK\x03\x04", "slides.pptx")
    assert detect_kind("README", "text/markdown; charset=utf-8") == "markdown"
    with pytest.raises(Unsupported):
        detect_kind("blob", None)


def test_size_limit() -> None:
    with pytest.raises(TooLarge) as err:
        extract(b"x" * 2048, "big.txt", max_bytes=1024)
    assert err.value.field == "size"


def test_empty_and_binary_text_are_failures() -> None:
    with pytest.raises(ExtractionFailed, match="no text"):
        extract(b"  \n\n \t\n", "empty.md")
    with pytest.raises(ExtractionFailed, match="binary"):
        extract(b"abc\x00\x01\x02def", "weird.txt")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("café".encode(), "café"),
        (b"\xef\xbb\xbfcaf\xc3\xa9", "café"),  # UTF-8 with BOM
        ("café".encode("utf-16"), "café"),  # BOM decides the byte order
        (b"caf\xe9 \x93quoted\x94", "café \u201cquoted\u201d"),  # not UTF-8: cp1252
        (b"\x81\x8d", "\x81\x8d"),  # bytes cp1252 leaves undefined: latin-1 never fails
        (b"a\r\nb\rc", "a\nb\nc"),
    ],
)
def test_decoding(data: bytes, expected: str) -> None:
    assert decode_text(data) == expected
