"""Go's ``http.DetectContentType``: the media type of a body from its first 512 bytes.

Go follows the WHATWG MIME Sniffing standard in a fixed order of signatures: HTML tags, XML,
PDF/PostScript, byte-order marks, images, audio and video, fonts, archives, WebAssembly, and
finally "text unless a binary byte shows up"; anything else is ``application/octet-stream``.
Pure: bytes in, a media type out.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SNIFF_LENGTH", "detect_content_type"]

SNIFF_LENGTH = 512

_WHITESPACE = b"\t\n\x0c\r "
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"

# (upper-cased tag opener) -> text/html when followed by a space or ">".
_HTML_TAGS = tuple(tag.encode() for tag in (
    "<!DOCTYPE HTML", "<HTML", "<HEAD", "<SCRIPT", "<IFRAME", "<H1", "<DIV", "<FONT", "<TABLE",
    "<A", "<STYLE", "<TITLE", "<B", "<BODY", "<BR", "<P", "<!--"))

Matcher = Callable[[bytes, int], bool]


def _prefix(signature: bytes) -> Matcher:
    return lambda data, _start: data.startswith(signature)


def _masked(pattern: bytes, mask: bytes, skip_whitespace: bool = False) -> Matcher:
    def match(data: bytes, start: int) -> bool:
        if skip_whitespace:
            data = data[start:]
        if len(data) < len(pattern):
            return False
        return all(data[index] & mask[index] == byte for index, byte in enumerate(pattern))
    return match


def _riff(kind: bytes) -> Matcher:
    # "RIFF", four bytes of length (ignored), then the form type.
    return _masked(b"RIFF\x00\x00\x00\x00" + kind, b"\xff" * 4 + b"\x00" * 4 + b"\xff" * len(kind))


def _mp4(data: bytes, _start: int) -> bool:
    if len(data) < 12:
        return False
    box = int.from_bytes(data[:4], "big")
    if len(data) < box or box % 4 or data[4:8] != b"ftyp":
        return False
    # Brands every four bytes after the box header; bytes 12-15 are the major brand's version.
    return any(data[offset:offset + 3] == b"mp4" for offset in range(8, box, 4) if offset != 12)


_SIGNATURES: tuple[tuple[Matcher, str], ...] = (
    (_masked(b"<?xml", b"\xff" * 5, skip_whitespace=True), "text/xml; charset=utf-8"),
    (_prefix(b"%PDF-"), "application/pdf"),
    (_prefix(b"%!PS-Adobe-"), "application/postscript"),
    (_masked(b"\xfe\xff\x00\x00", b"\xff\xff\x00\x00"), "text/plain; charset=utf-16be"),
    (_masked(b"\xff\xfe\x00\x00", b"\xff\xff\x00\x00"), "text/plain; charset=utf-16le"),
    (_masked(b"\xef\xbb\xbf\x00", b"\xff\xff\xff\x00"), "text/plain; charset=utf-8"),
    (_prefix(b"\x00\x00\x01\x00"), "image/x-icon"),
    (_prefix(b"\x00\x00\x02\x00"), "image/x-icon"),
    (_prefix(b"BM"), "image/bmp"),
    (_prefix(b"GIF87a"), "image/gif"),
    (_prefix(b"GIF89a"), "image/gif"),
    (_riff(b"WEBPVP"), "image/webp"),
    (_prefix(b"\x89PNG\r\n\x1a\n"), "image/png"),
    (_prefix(b"\xff\xd8\xff"), "image/jpeg"),
    (_prefix(b".snd"), "audio/basic"),
    (_masked(b"FORM\x00\x00\x00\x00AIFF", b"\xff" * 4 + b"\x00" * 4 + b"\xff" * 4), "audio/aiff"),
    (_prefix(b"ID3"), "audio/mpeg"),
    (_prefix(b"OggS\x00"), "application/ogg"),
    (_prefix(b"MThd\x00\x00\x00\x06"), "audio/midi"),
    (_riff(b"AVI "), "video/avi"),
    (_riff(b"WAVE"), "audio/wave"),
    (_mp4, "video/mp4"),
    (_prefix(b"\x1a\x45\xdf\xa3"), "video/webm"),
    (_masked(b"\x00" * 34 + b"LP", b"\x00" * 34 + b"\xff\xff"), "application/vnd.ms-fontobject"),
    (_prefix(b"\x00\x01\x00\x00"), "font/ttf"),
    (_prefix(b"OTTO"), "font/otf"),
    (_prefix(b"ttcf"), "font/collection"),
    (_prefix(b"wOFF"), "font/woff"),
    (_prefix(b"wOF2"), "font/woff2"),
    (_prefix(b"\x1f\x8b\x08"), "application/x-gzip"),
    (_prefix(b"PK\x03\x04"), "application/zip"),
    (_prefix(b"Rar!\x1a\x07\x00"), "application/x-rar-compressed"),
    (_prefix(b"Rar!\x1a\x07\x01\x00"), "application/x-rar-compressed"),
    (_prefix(b"\x00asm"), "application/wasm"),
)

# Bytes that make data binary: controls other than TAB, LF, FF, CR and ESC.
_BINARY = frozenset({*range(0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)})


def _is_html(data: bytes, start: int) -> bool:
    rest = data[start:start + 16]
    for tag in _HTML_TAGS:
        size = len(tag)
        if len(rest) <= size:
            continue
        # Letters compare case-insensitively (Go clears bit 0x20 where the tag has a letter).
        if all(byte == (have & 0xDF if 0x41 <= byte <= 0x5A else have)
               for byte, have in zip(tag, rest, strict=False)) and rest[size] in b" >":
            return True
    return False


def detect_content_type(data: bytes) -> str:
    """The media type Go's ``http.DetectContentType`` gives ``data`` (only 512 bytes are read)."""
    data = data[:SNIFF_LENGTH]
    start = 0
    while start < len(data) and data[start] in _WHITESPACE:
        start += 1
    if _is_html(data, start):
        return _HTML
    for match, media_type in _SIGNATURES:
        if match(data, start):
            return media_type
    if not any(byte in _BINARY for byte in data[start:]):
        return _TEXT
    return "application/octet-stream"
