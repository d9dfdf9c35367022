"""Sans-IO TLS ClientHello reader: SNI, ALPN and offered versions from the first bytes of a connection."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "HELLO",
    "MALFORMED",
    "MAX_HANDSHAKE_LENGTH",
    "MAX_RECORD_LENGTH",
    "NEED_MORE",
    "NOT_TLS",
    "ClientHello",
    "ClientHelloReader",
    "HelloKind",
    "HelloResult",
    "read_client_hello",
]


class HelloKind(enum.Enum):
    """What the bytes seen so far say about the connection."""

    NEED_MORE = "need_more"
    NOT_TLS = "not_tls"
    MALFORMED = "malformed"
    HELLO = "hello"


# Final, here and below: a compiled build (setup.py) holds the constants in C instead of
# looking each one up in the module's dict at every use.
NEED_MORE: Final = HelloKind.NEED_MORE
NOT_TLS: Final = HelloKind.NOT_TLS
MALFORMED: Final = HelloKind.MALFORMED
HELLO: Final = HelloKind.HELLO

# Go's crypto/tls limits (maxCiphertext, maxHandshake); Traefik closes connections beyond them.
MAX_RECORD_LENGTH: Final = 16384 + 2048
MAX_HANDSHAKE_LENGTH: Final = 65536
# Go accepts a hello cut into any number of records; a cap keeps one client
# from making a read walk tens of thousands of 1-byte records. Real clients
# use one or two; fragmenting tools a handful, at worst one byte per record.
MAX_RECORDS: Final = 2048

_RECORD_HEADER_LENGTH: Final = 5
_HANDSHAKE_HEADER_LENGTH: Final = 4
_CONTENT_TYPE_HANDSHAKE: Final = 0x16
# No TLS record type is 0x80, but an SSLv2-compatible hello starts with a two-byte length whose
# high bit is set and whose value is below 256; Traefik looks at this one byte only.
_SSLV2_FIRST_BYTE: Final = 0x80
_HANDSHAKE_TYPE_CLIENT_HELLO: Final = 1
_MAX_SESSION_ID_LENGTH: Final = 32

_EXTENSION_SERVER_NAME: Final = 0
_EXTENSION_ALPN: Final = 16
_EXTENSION_SUPPORTED_VERSIONS: Final = 43
_SERVER_NAME_TYPE_HOST_NAME: Final = 0

# Go's unicode.IsSpace set, which strings.TrimSpace uses on the SNI; Python's str.strip() would
# also remove U+001C..U+001F.
_GO_WHITESPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the router needs from a ClientHello.

    ``sni`` is the host_name, trimmed of whitespace and lower-cased as Traefik does (no trailing
    dot removal); None when the client sent none, or only whitespace. ``alpn`` holds the offered
    protocols in order, decoded as UTF-8 with ``surrogateescape`` so that any byte string
    survives and ``p.encode("utf-8", "surrogateescape")`` gives back the wire bytes.
    ``versions`` is the supported_versions list (GREASE values included) or else the legacy
    client_version. ``record_bytes`` is how many input bytes the records carrying the hello
    occupy; an SSLv2 hello is classified from its first byte alone, so it reports 0.
    """

    sni: str | None
    alpn: tuple[str, ...]
    versions: tuple[int, ...]
    sslv2: bool
    record_bytes: int


@dataclass(frozen=True, slots=True)
class HelloResult:
    """The verdict on the bytes seen so far; ``hello`` is set for HELLO, ``reason`` for MALFORMED."""

    kind: HelloKind
    hello: ClientHello | None = None
    reason: str = ""


_NEED_MORE_RESULT: Final = HelloResult(NEED_MORE)
_NOT_TLS_RESULT: Final = HelloResult(NOT_TLS)
_SSLV2_RESULT: Final = HelloResult(
    HELLO, ClientHello(sni=None, alpn=(), versions=(), sslv2=True, record_bytes=0)
)


class _Malformed(Exception):
    """Internal signal carrying the reason; never leaves this module."""


class ClientHelloReader:
    """Reads a ClientHello as its bytes arrive, one segment at a time.

    Every record header is vetted the moment its bytes exist (type, version,
    length, empty records, how many records), and each input byte is looked at
    once, so a client that trickles its hello or floods empty records costs
    time linear in what it sent and memory bounded by the caps: at most
    ``MAX_RECORDS`` records and one ClientHello of ``MAX_HANDSHAKE_LENGTH``.
    Once the verdict is HELLO, NOT_TLS or MALFORMED it stays; bytes after the
    hello's last record are not read.
    """

    __slots__ = ("_consumed", "_handshake", "_header", "_needed", "_records", "_remaining",
                 "_result")

    def __init__(self) -> None:
        self._header = bytearray()  # the record header being read
        self._remaining = 0  # payload bytes of the current record still to come
        self._handshake = bytearray()  # handshake bytes from complete or partial records
        self._needed = -1  # bytes the whole ClientHello message takes, once known
        self._records = 0
        self._consumed = 0  # input bytes taken by the records so far
        self._result: HelloResult | None = None

    @property
    def done(self) -> bool:
        return self._result is not None

    def feed(self, data: bytes | bytearray | memoryview) -> HelloResult:
        """Take the next bytes of the connection; the verdict on everything fed so far."""
        if self._result is not None:
            return self._result
        if not data:
            return _NEED_MORE_RESULT
        if self._consumed == 0:
            first = data[0]
            if first == _SSLV2_FIRST_BYTE:
                self._result = _SSLV2_RESULT
                return _SSLV2_RESULT
            if first != _CONTENT_TYPE_HANDSHAKE:
                self._result = _NOT_TLS_RESULT
                return _NOT_TLS_RESULT
        try:
            result = self._take(memoryview(data))
        except _Malformed as exc:
            result = HelloResult(MALFORMED, reason=str(exc))
        if result is not _NEED_MORE_RESULT:
            self._result = result
        return result

    def _take(self, data: memoryview) -> HelloResult:
        pos, size = 0, len(data)
        while pos < size:
            if self._remaining == 0:
                pos = self._take_header(data, pos)
                continue
            end = min(size, pos + self._remaining)
            self._handshake += data[pos:end]
            self._remaining -= end - pos
            self._consumed += end - pos
            pos = end
            self._vet_handshake_header()
            if self._remaining == 0 and 0 <= self._needed <= len(self._handshake):
                return self._hello()
        return _NEED_MORE_RESULT

    def _take_header(self, data: memoryview, pos: int) -> int:
        header = self._header
        end = min(len(data), pos + _RECORD_HEADER_LENGTH - len(header))
        header += data[pos:end]
        self._consumed += end - pos
        if header[0] != _CONTENT_TYPE_HANDSHAKE:
            raise _Malformed(f"TLS record of type {header[0]} before the ClientHello is complete")
        if len(header) > 1 and header[1] != 3:
            raise _Malformed(f"TLS record version major {header[1]} is not 3")
        if len(header) < _RECORD_HEADER_LENGTH:
            return end
        length = header[3] << 8 | header[4]
        if length == 0:
            raise _Malformed("empty TLS handshake record")
        if length > MAX_RECORD_LENGTH:
            raise _Malformed(f"TLS record length {length} exceeds {MAX_RECORD_LENGTH}")
        self._records += 1
        if self._records > MAX_RECORDS:
            raise _Malformed(f"ClientHello spread over more than {MAX_RECORDS} TLS records")
        self._remaining = length
        header.clear()
        return end

    def _vet_handshake_header(self) -> None:
        # Refuse garbage as soon as the message header shows it, without waiting
        # for records that may never complete.
        if self._needed >= 0:
            return
        head = self._handshake
        if head[0] != _HANDSHAKE_TYPE_CLIENT_HELLO:
            raise _Malformed(f"handshake message type {head[0]} is not ClientHello (1)")
        if len(head) < _HANDSHAKE_HEADER_LENGTH:
            return
        message_length = int.from_bytes(head[1:4], "big")
        if message_length > MAX_HANDSHAKE_LENGTH:
            raise _Malformed(f"ClientHello length {message_length} exceeds {MAX_HANDSHAKE_LENGTH}")
        self._needed = _HANDSHAKE_HEADER_LENGTH + message_length

    def _hello(self) -> HelloResult:
        message = bytes(self._handshake)
        hello = _parse_client_hello_body(message, _HANDSHAKE_HEADER_LENGTH, self._needed,
                                         self._consumed)
        return HelloResult(HELLO, hello)


def read_client_hello(data: bytes | bytearray | memoryview) -> HelloResult:
    """Classify the first bytes of a connection and, once complete, read its ClientHello.

    Pure and total: it never raises. NEED_MORE means only that the bytes seen are a proper
    prefix of something that may still become a valid hello. For bytes that arrive in
    segments, feed a ``ClientHelloReader`` instead of calling this again on a growing buffer.
    """
    return ClientHelloReader().feed(data)


class _Cursor:
    """Bounds-checked reader over ``buf[pos:end]``; running past ``end`` is MALFORMED."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def u8(self, what: str) -> int:
        if self.pos + 1 > self.end:
            raise _Malformed(f"ClientHello truncated in {what}")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def u16(self, what: str) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise _Malformed(f"ClientHello truncated in {what}")
        self.pos = pos + 2
        return self.buf[pos] << 8 | self.buf[pos + 1]

    def skip(self, count: int, what: str) -> None:
        if self.pos + count > self.end:
            raise _Malformed(f"ClientHello truncated in {what}")
        self.pos += count

    def vector(self, length_bytes: int, what: str) -> _Cursor:
        """Consume a length-prefixed block and return a cursor confined to it."""
        length = self.u8(what) if length_bytes == 1 else self.u16(what)
        start = self.pos
        if start + length > self.end:
            raise _Malformed(f"{what} length {length} overruns its enclosing block")
        self.pos = start + length
        return _Cursor(self.buf, start, start + length)

    def remaining(self) -> bytes:
        return self.buf[self.pos : self.end]


def _parse_client_hello_body(buf: bytes, start: int, end: int, record_bytes: int) -> ClientHello:
    body = _Cursor(buf, start, end)
    legacy_version = body.u16("legacy version")
    body.skip(32, "random")
    session_id = body.vector(1, "session id")
    if session_id.end - session_id.pos > _MAX_SESSION_ID_LENGTH:
        raise _Malformed(f"session id longer than {_MAX_SESSION_ID_LENGTH} bytes")
    cipher_suites = body.vector(2, "cipher suites")
    suites_length = cipher_suites.end - cipher_suites.pos
    if suites_length == 0 or suites_length % 2:
        raise _Malformed(f"cipher suites length {suites_length} is not a positive even number")
    if body.vector(1, "compression methods").at_end():
        raise _Malformed("no compression methods")

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = (legacy_version,)
    if body.at_end():  # extensions are optional in a ClientHello
        return ClientHello(sni, alpn, versions, sslv2=False, record_bytes=record_bytes)
    extensions = body.vector(2, "extensions")
    if not body.at_end():
        raise _Malformed("bytes after the extensions block")
    # Extension headers are walked inline: most extensions are skipped, and this loop runs on
    # every TLS connection.
    seen: set[int] = set()
    pos, extensions_end = extensions.pos, extensions.end
    while pos < extensions_end:
        if pos + 4 > extensions_end:
            raise _Malformed("ClientHello truncated in an extension header")
        extension_type = buf[pos] << 8 | buf[pos + 1]
        data_start = pos + 4
        pos = data_start + (buf[pos + 2] << 8 | buf[pos + 3])
        if pos > extensions_end:
            raise _Malformed(f"extension {extension_type} overruns the extensions block")
        if extension_type in seen:
            raise _Malformed(f"extension {extension_type} appears twice")
        seen.add(extension_type)
        if extension_type == _EXTENSION_SERVER_NAME:
            sni = _read_server_name(_Cursor(buf, data_start, pos))
        elif extension_type == _EXTENSION_ALPN:
            alpn = _read_alpn(_Cursor(buf, data_start, pos))
        elif extension_type == _EXTENSION_SUPPORTED_VERSIONS:
            versions = _read_supported_versions(_Cursor(buf, data_start, pos))
    return ClientHello(sni, alpn, versions, sslv2=False, record_bytes=record_bytes)


def _read_server_name(extension: _Cursor) -> str | None:
    # RFC 6066 section 3, with Go's strictness: a non-empty list, non-empty names, one host_name.
    names = extension.vector(2, "server name list")
    _expect_end(extension, "server_name")
    if names.at_end():
        raise _Malformed("empty server name list")
    host: bytes | None = None
    while not names.at_end():
        name_type = names.u8("server name type")
        name = names.vector(2, "server name")
        if name.at_end():
            raise _Malformed("empty server name")
        if name_type != _SERVER_NAME_TYPE_HOST_NAME:
            continue
        if host is not None:
            raise _Malformed("more than one host_name in server_name")
        host = name.remaining()
    if host is None:
        return None
    return host.decode("utf-8", "surrogateescape").strip(_GO_WHITESPACE).lower() or None


def _read_alpn(extension: _Cursor) -> tuple[str, ...]:
    # RFC 7301 section 3.1: a non-empty list of non-empty protocol names.
    protocols = extension.vector(2, "ALPN protocol list")
    _expect_end(extension, "ALPN")
    if protocols.at_end():
        raise _Malformed("empty ALPN protocol list")
    offered: list[str] = []
    while not protocols.at_end():
        name = protocols.vector(1, "ALPN protocol")
        if name.at_end():
            raise _Malformed("empty ALPN protocol name")
        offered.append(name.remaining().decode("utf-8", "surrogateescape"))
    return tuple(offered)


def _read_supported_versions(extension: _Cursor) -> tuple[int, ...]:
    # RFC 8446 section 4.2.1: a non-empty list of two-byte versions.
    listed = extension.vector(1, "supported versions")
    _expect_end(extension, "supported_versions")
    length = listed.end - listed.pos
    if length == 0 or length % 2:
        raise _Malformed(f"supported versions length {length} is not a positive even number")
    raw = listed.remaining()
    return tuple(raw[i] << 8 | raw[i + 1] for i in range(0, length, 2))


def _expect_end(extension: _Cursor, name: str) -> None:
    if not extension.at_end():
        raise _Malformed(f"trailing bytes in the {name} extension")
