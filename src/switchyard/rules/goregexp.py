"""Go's regexp over bytes with RE2: compile, match, submatches and ReplaceAllString's expansion.

Traefik's configuration regexes are Go's; RE2 has the same syntax and leftmost-first
semantics. What Go adds on top, and what this module writes the Go way, is how
``ReplaceAllString`` walks the input (an empty match right after a match is not replaced; the
search moves on by one UTF-8 sequence) and how a template's ``$1``, ``${name}`` and ``$$`` are
expanded.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import re2  # type: ignore[import-untyped]

__all__ = ["OPTIONS", "GoRegexp", "expand"]

OPTIONS = re2.Options()
# RE2 otherwise writes every pattern error to stderr through absl logging.
OPTIONS.log_errors = False
# Go's regexp refuses \C (match any byte) where C++ RE2 takes it: an odd run of backslashes.
_BACKSLASH_C = re.compile(r"(?<!\\)(?:\\\\)*\\C")
# Go stops reading a group number at this value (it is a name from there on).
_MAX_GROUP = 100_000_000

Spans = list[tuple[int, int]]


class GoRegexp:
    """A pattern compiled with Go's syntax; ValueError (RE2's reason) when it is refused."""

    __slots__ = ("_names", "_regexp", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        if _BACKSLASH_C.search(pattern):
            raise ValueError("\\C is not supported")
        try:
            self._regexp = re2.compile(pattern.encode("utf-8", "surrogateescape"), OPTIONS)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(str(reason)) from None
        names: list[bytes] = [b""] * (self._regexp.groups + 1)
        for name, index in self._regexp.groupindex.items():
            names[index] = name if isinstance(name, bytes) else name.encode("utf-8")
        self._names = names

    @property
    def search(self) -> Any:
        """The compiled pattern's unanchored ``search(data, pos)`` (a match or None)."""
        return self._regexp.search

    def matches(self, data: bytes) -> bool:
        """Go's MatchString."""
        return self._regexp.search(data) is not None

    def find_submatch(self, data: bytes) -> Spans | None:
        """Go's FindStringSubmatchIndex: a (start, end) per group, (-1, -1) when it took no part."""
        return self._spans(data, 0)

    def _spans(self, data: bytes, pos: int) -> Spans | None:
        found = self._regexp.search(data, pos)
        if found is None:
            return None
        return [found.span(group) for group in range(len(self._names))]

    def replace_all(self, data: bytes, template: bytes) -> bytes:
        """Go's ReplaceAllString: every match replaced by ``template`` expanded (see expand)."""
        out = bytearray()
        last_end = 0
        pos = 0
        size = len(data)
        while pos <= size:
            spans = self._spans(data, pos)
            if spans is None:
                break
            start, end = spans[0]
            out += data[last_end:start]
            # Not for an empty match right after the previous one (Go's rule).
            if end > last_end or start == 0:
                out += expand(template, data, spans, self._names)
            last_end = end
            width = _rune_width(data, pos)
            if pos + width > end:
                pos += width
            elif pos + 1 > end:
                pos += 1
            else:
                pos = end
        out += data[last_end:]
        return bytes(out)


def _rune_width(data: bytes, pos: int) -> int:
    """Bytes of the UTF-8 sequence at ``pos`` (1 for an invalid byte, 0 at the end)."""
    if pos >= len(data):
        return 0
    lead = data[pos]
    if lead < 0x80:
        return 1
    for width in (2, 3, 4):
        try:
            data[pos:pos + width].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return width
    return 1


def _is_name_rune(char: str) -> bool:
    # unicode.IsLetter (category L*), unicode.IsDigit (Nd) or '_'.
    return char == "_" or char.isalpha() or unicodedata.category(char) == "Nd"


def _name_length(text: str) -> int:
    length = 0
    for char in text:
        if not _is_name_rune(char):
            break
        length += 1
    return length


def _extract(template: str) -> tuple[str, int, str] | None:
    """After a ``$``: (name, group number or -1, rest), or None when malformed."""
    brace = template[:1] == "{"
    body = template[1:] if brace else template
    length = _name_length(body)
    if length == 0:
        return None
    name = body[:length]
    rest = body[length:]
    if brace:
        if rest[:1] != "}":
            return None
        rest = rest[1:]
    number = 0
    for char in name:
        if not "0" <= char <= "9" or number >= _MAX_GROUP:
            number = -1
            break
        number = number * 10 + ord(char) - 48
    if name[0] == "0" and len(name) > 1:
        number = -1  # no leading zeros: a name, which no group has
    return name, number, rest


def expand(template: bytes, data: bytes, spans: Spans, names: list[bytes]) -> bytes:
    """Go's Regexp.Expand: ``$n``/``${n}`` the n-th group, ``$name``/``${name}`` the named one,
    ``$$`` a ``$``; a name is as long as it can be (``$1x`` is ``${1x}``); an unknown or unmatched
    group is empty; a ``$`` that starts no valid reference is kept as it is."""
    if b"$" not in template:
        return template
    text = template.decode("utf-8", "surrogateescape")
    out = bytearray()
    while text:
        before, dollar, after = text.partition("$")
        out += before.encode("utf-8", "surrogateescape")
        if not dollar:
            return bytes(out)
        text = after
        if text[:1] == "$":
            out += b"$"
            text = text[1:]
            continue
        found = _extract(text)
        if found is None:
            out += b"$"
            continue
        name, number, text = found
        if number >= 0:
            if number < len(spans) and spans[number][0] >= 0:
                out += data[spans[number][0]:spans[number][1]]
            continue
        wanted = name.encode("utf-8", "surrogateescape")
        for index, group in enumerate(names):
            if group == wanted and index < len(spans) and spans[index][0] >= 0:
                out += data[spans[index][0]:spans[index][1]]
                break
    return bytes(out)
