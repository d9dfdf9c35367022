"""Sans-IO TLS ClientHello reader: SNI, ALPN and offered versions from the first bytes of a connection."""

from __future__ import annotations

import enum
import struct
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
_READ_EXTENSIONS: Final = frozenset(
    (_EXTENSION_SERVER_NAME, _EXTENSION_ALPN, _EXTENSION_SUPPORTED_VERSIONS))
_EXTENSION_HEADER: Final = struct.Struct(">HH")  # type, length

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
            if self._consumed == 0:
                whole = _whole_hello(data)
                if whole is not None:
                    self._result = whole
                    return whole
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


def _whole_hello(data: bytes | bytearray | memoryview) -> HelloResult | None:
    """The verdict when the first read holds a valid first record that carries the whole
    ClientHello, as nearly every client sends it; None for anything else, which the record
    by record reader then judges (with the same verdict for these bytes, only slower)."""
    size = len(data)
    if size < _RECORD_HEADER_LENGTH + _HANDSHAKE_HEADER_LENGTH or data[1] != 3:
        return None
    length = data[3] << 8 | data[4]
    record_bytes = _RECORD_HEADER_LENGTH + length
    if not 0 < length <= MAX_RECORD_LENGTH or size < record_bytes:
        return None
    if data[5] != _HANDSHAKE_TYPE_CLIENT_HELLO:
        return None
    end = _RECORD_HEADER_LENGTH + _HANDSHAKE_HEADER_LENGTH + (
        data[6] << 16 | data[7] << 8 | data[8])
    if end > record_bytes:
        return None  # the hello goes on in further records
    buf = data if isinstance(data, bytes) else bytes(data)
    return HelloResult(HELLO, _parse_client_hello_body(
        buf, _RECORD_HEADER_LENGTH + _HANDSHAKE_HEADER_LENGTH, end, record_bytes))


def read_client_hello(data: bytes | bytearray | memoryview) -> HelloResult:
    """Classify the first bytes of a connection and, once complete, read its ClientHello.

    Pure and total: it never raises. NEED_MORE means only that the bytes seen are a proper
    prefix of something that may still become a valid hello. For bytes that arrive in
    segments, feed a ``ClientHelloReader`` instead of calling this again on a growing buffer.
    """
    return ClientHelloReader().feed(data)


def _truncated(what: str) -> _Malformed:
    return _Malformed(f"ClientHello truncated in {what}")


def _vector(buf: bytes, pos: int, end: int, length_bytes: int, what: str) -> tuple[int, int]:
    """The bounds (start, end) of the length-prefixed block at ``pos``, inside ``end``."""
    start = pos + length_bytes
    if start > end:
        raise _truncated(what)
    length = buf[pos] if length_bytes == 1 else buf[pos] << 8 | buf[pos + 1]
    if start + length > end:
        raise _Malformed(f"{what} length {length} overruns its enclosing block")
    return start, start + length


# The parser works on offsets into one bytes object, with the bounds checks inline: it runs on
# every TLS connection, and a cursor object per block cost more than the parsing itself.
def _parse_client_hello_body(buf: bytes, start: int, end: int, record_bytes: int) -> ClientHello:
    if start + 2 > end:
        raise _truncated("legacy version")
    legacy_version = buf[start] << 8 | buf[start + 1]
    pos = start + 34
    if pos > end:
        raise _truncated("random")
    session_start, pos = _vector(buf, pos, end, 1, "session id")
    if pos - session_start > _MAX_SESSION_ID_LENGTH:
        raise _Malformed(f"session id longer than {_MAX_SESSION_ID_LENGTH} bytes")
    suites_start, pos = _vector(buf, pos, end, 2, "cipher suites")
    suites_length = pos - suites_start
    if suites_length == 0 or suites_length % 2:
        raise _Malformed(f"cipher suites length {suites_length} is not a positive even number")
    methods_start, pos = _vector(buf, pos, end, 1, "compression methods")
    if methods_start == pos:
        raise _Malformed("no compression methods")

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = (legacy_version,)
    if pos >= end:  # extensions are optional in a ClientHello
        return ClientHello(sni, alpn, versions, False, record_bytes)
    pos, extensions_end = _vector(buf, pos, end, 2, "extensions")
    if extensions_end < end:
        raise _Malformed("bytes after the extensions block")
    seen: set[int] = set()
    header = _EXTENSION_HEADER.unpack_from
    while pos < extensions_end:
        if pos + 4 > extensions_end:
            raise _Malformed("ClientHello truncated in an extension header")
        extension_type, size = header(buf, pos)
        data_start = pos + 4
        pos = data_start + size
        if pos > extensions_end:
            raise _Malformed(f"extension {extension_type} overruns the extensions block")
        if extension_type in seen:
            raise _Malformed(f"extension {extension_type} appears twice")
        seen.add(extension_type)
        if extension_type not in _READ_EXTENSIONS:
            continue  # most of them
        if extension_type == _EXTENSION_SERVER_NAME:
            sni = _read_server_name(buf, data_start, pos)
        elif extension_type == _EXTENSION_ALPN:
            alpn = _read_alpn(buf, data_start, pos)
        else:
            versions = _read_supported_versions(buf, data_start, pos)
    return ClientHello(sni, alpn, versions, False, record_bytes)


def _read_server_name(buf: bytes, start: int, end: int) -> str | None:
    # RFC 6066 section 3, with Go's strictness: a non-empty list, non-empty names, one host_name.
    pos, names_end = _vector(buf, start, end, 2, "server name list")
    _expect_end(names_end, end, "server_name")
    if pos >= names_end:
        raise _Malformed("empty server name list")
    host: bytes | None = None
    while pos < names_end:
        if pos + 1 > names_end:
            raise _truncated("server name type")
        name_type = buf[pos]
        name_start, pos = _vector(buf, pos + 1, names_end, 2, "server name")
        if name_start >= pos:
            raise _Malformed("empty server name")
        if name_type != _SERVER_NAME_TYPE_HOST_NAME:
            continue
        if host is not None:
            raise _Malformed("more than one host_name in server_name")
        host = buf[name_start:pos]
    if host is None:
        return None
    return host.decode("utf-8", "surrogateescape").strip(_GO_WHITESPACE).lower() or None


def _read_alpn(buf: bytes, start: int, end: int) -> tuple[str, ...]:
    # RFC 7301 section 3.1: a non-empty list of non-empty protocol names.
    pos, protocols_end = _vector(buf, start, end, 2, "ALPN protocol list")
    _expect_end(protocols_end, end, "ALPN")
    if pos >= protocols_end:
        raise _Malformed("empty ALPN protocol list")
    offered: list[str] = []
    while pos < protocols_end:
        name_start, pos = _vector(buf, pos, protocols_end, 1, "ALPN protocol")
        if name_start >= pos:
            raise _Malformed("empty ALPN protocol name")
        offered.append(buf[name_start:pos].decode("utf-8", "surrogateescape"))
    return tuple(offered)


def _read_supported_versions(buf: bytes, start: int, end: int) -> tuple[int, ...]:
    # RFC 8446 section 4.2.1: a non-empty list of two-byte versions.
    pos, listed_end = _vector(buf, start, end, 1, "supported versions")
    _expect_end(listed_end, end, "supported_versions")
    length = listed_end - pos
    if length == 0 or length % 2:
        raise _Malformed(f"supported versions length {length} is not a positive even number")
    return tuple(buf[i] << 8 | buf[i + 1] for i in range(pos, listed_end, 2))


def _expect_end(block_end: int, end: int, name: str) -> None:
    if block_end < end:
        raise _Malformed(f"trailing bytes in the {name} extension")
