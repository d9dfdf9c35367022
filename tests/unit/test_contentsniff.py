"""Go's http.DetectContentType, rewritten: known signatures and properties over any bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.http.middlewares.contentsniff import SNIFF_LENGTH, detect_content_type
from switchyard.http.middlewares.headers import canonical_name, field_value

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"

# Every type the table can give, and the two fallbacks.
KNOWN = {
    HTML, TEXT, BINARY, "text/xml; charset=utf-8", "application/pdf", "application/postscript",
    "text/plain; charset=utf-16be", "text/plain; charset=utf-16le", "image/x-icon",
    "image/bmp", "image/gif", "image/webp", "image/png", "image/jpeg", "audio/basic",
    "audio/aiff", "audio/mpeg", "application/ogg", "audio/midi", "video/avi", "audio/wave",
    "video/mp4", "video/webm", "application/vnd.ms-fontobject", "font/ttf", "font/otf",
    "font/collection", "font/woff", "font/woff2", "application/x-gzip", "application/zip",
    "application/x-rar-compressed", "application/wasm",
}


@pytest.mark.parametrize(("data", "expected"), [
    (b"", TEXT),
    (b"   \n<!doctype HTML>", HTML),
    (b"<HtMl>", HTML),
    (b"<html", TEXT),  # a tag needs a space or ">" after it
    (b"<b>bold</b>", HTML),
    (b"<br/>", TEXT),
    (b"<!-- c -->", HTML),
    (b"\t<?xml version='1.0'?>", "text/xml; charset=utf-8"),
    (b" %PDF-1.7", TEXT),  # exact signatures do not skip white space
    (b"%PDF-1.7", "application/pdf"),
    (b"\xef\xbb\xbfhello", TEXT),
    (b"\xfe\xff\x00h", "text/plain; charset=utf-16be"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", "audio/wave"),
    (b"RIFF\x10\x00\x00\x00AVI LIST", "video/avi"),
    (b"\x00\x00\x00\x14ftypisom\x00\x00\x00\x00mp41", "video/mp4"),
    (b"\x00\x00\x00\x14ftypisom\x00\x00\x00\x00abcd", BINARY),
    (b"\x00" * 34 + b"LP", "application/vnd.ms-fontobject"),
    (b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
    (b"caf\xc3\xa9 \x1b[0m", TEXT),  # ESC does not make text binary
    (b"text\x00", BINARY),
    (b"a" * SNIFF_LENGTH + b"\x00", TEXT),  # only 512 bytes are read
])
def test_known_bodies(data: bytes, expected: str) -> None:
    assert detect_content_type(data) == expected


@given(st.binary(max_size=2048))
def test_any_body_gets_a_known_type_from_its_first_512_bytes(data: bytes) -> None:
    found = detect_content_type(data)
    assert found in KNOWN
    assert found == detect_content_type(data[:SNIFF_LENGTH])


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300))
def test_printable_text_is_text_unless_it_opens_like_markup(text: str) -> None:
    found = detect_content_type(text.encode())
    if text.lstrip().startswith("<"):
        assert found in (HTML, TEXT, "text/xml; charset=utf-8")
    elif not text.startswith(("%PDF-", "%!PS-Adobe-", "BM", "GIF8", "ID3", ".snd", "OTTO",
                              "ttcf", "wOFF", "wOF2", "PK", "Rar!", "OggS", "MThd", "RIFF",
                              "FORM")):
        assert found == TEXT


@pytest.mark.parametrize(("name", "expected"), [
    (b"x-xss-protection", b"X-Xss-Protection"),
    (b"CONTENT-type", b"Content-Type"),
    (b"x_custom", b"X_custom"),
    (b"X Bad", b"X Bad"),  # not a token: left alone, as Go does
])
def test_canonical_names_are_gos(name: bytes, expected: bytes) -> None:
    assert canonical_name(name) == expected


@given(st.text(max_size=40))
def test_configured_values_never_carry_line_breaks_or_outer_blanks(text: str) -> None:
    value = field_value(text)
    assert b"\r" not in value and b"\n" not in value
    assert value == value.strip(b" \t")
