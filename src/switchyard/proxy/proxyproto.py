"""Sans-IO PROXY protocol (HAProxy, versions 1 and 2): read a header off a stream, build one to send."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

__all__ = [
    "ABSENT",
    "HEADER",
    "MALFORMED",
    "NEED_MORE",
    "V1_MAX_LENGTH",
    "V1_SIGNATURE",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyKind",
    "ProxyResult",
    "build_v1",
    "build_v2",
    "read_proxy_header",
]


class ProxyKind(enum.Enum):
    """What the bytes seen so far say about a PROXY protocol header."""

    NEED_MORE = "need_more"
    ABSENT = "absent"
    MALFORMED = "malformed"
    HEADER = "header"


NEED_MORE = ProxyKind.NEED_MORE
ABSENT = ProxyKind.ABSENT
MALFORMED = ProxyKind.MALFORMED
HEADER = ProxyKind.HEADER

# The spec (and go-proxyproto, which Traefik uses) commit to version 1 on these five bytes, so
# "PROXYX" is a broken header rather than no header.
V1_SIGNATURE = b"PROXY"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# "PROXY UNKNOWN <39-char IPv6> <39-char IPv6> 65535 65535\r\n", the longest line the spec allows.
V1_MAX_LENGTH = 107

_V2_FIXED_LENGTH = 16
_V2_VERSION = 2
_V2_COMMAND_LOCAL = 0
_V2_COMMAND_PROXY = 1
_V2_COMMAND_NAMES = {_V2_COMMAND_LOCAL: "LOCAL", _V2_COMMAND_PROXY: "PROXY"}
# The address/transport bytes the spec defines, with the size of their address block; any
# other value must be rejected.
_V2_ADDRESS_LENGTHS = {
    0x00: 0,  # UNSPEC
    0x11: 12,  # TCP over IPv4
    0x12: 12,  # UDP over IPv4
    0x21: 36,  # TCP over IPv6
    0x22: 36,  # UDP over IPv6
    0x31: 216,  # UNIX stream
    0x32: 216,  # UNIX datagram
}
_V2_LOCAL_UNSPEC = V2_SIGNATURE + bytes([_V2_VERSION << 4 | _V2_COMMAND_LOCAL, 0x00, 0, 0])
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21

Endpoint = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header.

    ``source``/``destination`` are ``(canonical IP text, port)`` and are None when the header
    carries no usable IP endpoint: v2 LOCAL, v1 UNKNOWN, AF_UNSPEC and AF_UNIX. ``length`` is the
    number of bytes the header occupies at the start of the stream, for the caller to strip.
    ``tlvs`` are the v2 type-length-value pairs in wire order (always empty for v1).
    """

    version: int
    command: str
    source: Endpoint | None
    destination: Endpoint | None
    length: int
    tlvs: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class ProxyResult:
    """The verdict on the bytes seen so far; ``header`` is set for HEADER, ``reason`` for MALFORMED."""

    kind: ProxyKind
    header: ProxyHeader | None = None
    reason: str = ""


_NEED_MORE_RESULT = ProxyResult(NEED_MORE)
_ABSENT_RESULT = ProxyResult(ABSENT)


def _malformed(reason: str) -> ProxyResult:
    return ProxyResult(MALFORMED, reason=reason)


def read_proxy_header(data: bytes | bytearray | memoryview) -> ProxyResult:
    """Read a PROXY protocol header, v1 or v2, from the start of ``data``.

    Pure and total: it never raises, and can be called again with more bytes. ABSENT is
    answered as soon as the bytes cannot begin either signature.
    """
    buf = bytes(data)  # no copy when given bytes
    if not buf:
        return _NEED_MORE_RESULT
    if buf[0] == V1_SIGNATURE[0]:
        signature, read = V1_SIGNATURE, _read_v1
    elif buf[0] == V2_SIGNATURE[0]:
        signature, read = V2_SIGNATURE, _read_v2
    else:
        return _ABSENT_RESULT
    seen = buf[: len(signature)]
    if seen != signature[: len(seen)]:
        return _ABSENT_RESULT
    if len(seen) < len(signature):
        return _NEED_MORE_RESULT
    return read(buf)


def _read_v1(buf: bytes) -> ProxyResult:
    window = buf[:V1_MAX_LENGTH]
    line_feed = window.find(b"\n")
    if line_feed < 0:
        if len(window) == V1_MAX_LENGTH:
            return _malformed(f"PROXY v1 line has no CRLF within {V1_MAX_LENGTH} bytes")
        return _NEED_MORE_RESULT
    if window[line_feed - 1] != 0x0D:  # line_feed >= 5: the signature has no LF
        return _malformed("PROXY v1 line ends with a bare LF instead of CRLF")
    length = line_feed + 1
    fields = window[: line_feed - 1].split(b" ")
    if fields[0] != V1_SIGNATURE:
        return _malformed("PROXY v1 signature is not followed by a space")
    if len(fields) < 2:
        return _malformed("PROXY v1 line has no protocol")
    protocol = fields[1]
    if protocol == b"UNKNOWN":
        # The spec tells receivers to ignore whatever follows UNKNOWN on the line.
        return ProxyResult(HEADER, ProxyHeader(1, "PROXY", None, None, length))
    if protocol == b"TCP4":
        family: type[IPv4Address | IPv6Address] = IPv4Address
    elif protocol == b"TCP6":
        family = IPv6Address
    else:
        return _malformed(f"PROXY v1 protocol {protocol!r} is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        return _malformed(
            f"PROXY v1 {protocol.decode()} line has {len(fields)} single-space separated "
            "fields instead of 6"
        )
    source_ip = _v1_address(fields[2], family)
    destination_ip = _v1_address(fields[3], family)
    source_port = _v1_port(fields[4])
    destination_port = _v1_port(fields[5])
    if source_ip is None or destination_ip is None:
        return _malformed(f"PROXY v1 {protocol.decode()} line has an invalid address")
    if source_port is None or destination_port is None:
        return _malformed("PROXY v1 line has an invalid port")
    return ProxyResult(
        HEADER,
        ProxyHeader(
            1, "PROXY", (source_ip, source_port), (destination_ip, destination_port), length
        ),
    )


def _v1_address(token: bytes, family: type[IPv4Address | IPv6Address]) -> str | None:
    """Canonical text of a strictly written address of ``family``, else None."""
    # ipaddress already refuses IPv4 octets with leading zeros; it would accept an IPv6
    # scope ("fe80::1%eth0"), which has no place on the wire.
    if not token.isascii() or b"%" in token:
        return None
    try:
        return str(family(token.decode("ascii")))
    except ValueError:
        return None


def _v1_port(token: bytes) -> int | None:
    # Decimal, ASCII digits only (bytes.isdigit is ASCII-only), no sign, no leading zero.
    if not token.isdigit() or (token[0] == 0x30 and len(token) > 1) or len(token) > 5:
        return None
    port = int(token)
    return port if port <= 0xFFFF else None


def _read_v2(buf: bytes) -> ProxyResult:
    size = len(buf)
    if size <= 12:
        return _NEED_MORE_RESULT
    version, command = buf[12] >> 4, buf[12] & 0x0F
    if version != _V2_VERSION:
        return _malformed(f"PROXY v2 signature with protocol version {version}")
    if command not in (_V2_COMMAND_LOCAL, _V2_COMMAND_PROXY):
        return _malformed(f"PROXY v2 command {command} is neither LOCAL (0) nor PROXY (1)")
    if size <= 13:
        return _NEED_MORE_RESULT
    family = buf[13]
    address_length = _V2_ADDRESS_LENGTHS.get(family)
    if address_length is None:
        return _malformed(f"PROXY v2 address family/protocol byte 0x{family:02x} is not defined")
    if size < _V2_FIXED_LENGTH:
        return _NEED_MORE_RESULT
    length = buf[14] << 8 | buf[15]
    # Checked whatever the command, as go-proxyproto does: a LOCAL header still names a family.
    if length < address_length:
        return _malformed(
            f"PROXY v2 length {length} is shorter than the {address_length}-byte address "
            f"block of family 0x{family:02x}"
        )
    total = _V2_FIXED_LENGTH + length
    if size < total:
        return _NEED_MORE_RESULT
    tlvs_start = _V2_FIXED_LENGTH + address_length
    tlvs: list[tuple[int, bytes]] = []
    pos = tlvs_start
    while pos < total:
        if pos + 3 > total:
            return _malformed(f"PROXY v2 TLV header truncated ({total - pos} bytes left)")
        tlv_type = buf[pos]
        value_end = pos + 3 + (buf[pos + 1] << 8 | buf[pos + 2])
        if value_end > total:
            return _malformed(f"PROXY v2 TLV 0x{tlv_type:02x} overruns the header")
        tlvs.append((tlv_type, buf[pos + 3 : value_end]))
        pos = value_end
    if command == _V2_COMMAND_LOCAL:
        source = destination = None
    else:
        source, destination = _v2_endpoints(buf, family)
    return ProxyResult(
        HEADER, ProxyHeader(2, _V2_COMMAND_NAMES[command], source, destination, total, tuple(tlvs))
    )


def _v2_endpoints(buf: bytes, family: int) -> tuple[Endpoint | None, Endpoint | None]:
    address_family = family >> 4
    if address_family == 1:
        width = 4
        make: type[IPv4Address | IPv6Address] = IPv4Address
    elif address_family == 2:
        width, make = 16, IPv6Address
    else:  # AF_UNSPEC and AF_UNIX carry no IP endpoint
        return None, None
    start = _V2_FIXED_LENGTH
    ports = start + 2 * width
    source_ip = make(buf[start : start + width])
    destination_ip = make(buf[start + width : ports])
    source_port = buf[ports] << 8 | buf[ports + 1]
    destination_port = buf[ports + 2] << 8 | buf[ports + 3]
    return (str(source_ip), source_port), (str(destination_ip), destination_port)


def build_v1(source: Endpoint, destination: Endpoint) -> bytes:
    """The v1 line announcing ``source`` -> ``destination``.

    TCP4 or TCP6 when both hosts are IP addresses of one family (IPv4-mapped IPv6 counts as
    IPv4, IPv6 zones are dropped); otherwise ``PROXY UNKNOWN``, as go-proxyproto does for
    non-TCP or mixed addresses. A port outside 0-65535 raises ValueError.
    """
    pair = _ip_pair(source, destination)
    if pair is None:
        return b"PROXY UNKNOWN\r\n"
    source_ip, destination_ip = pair
    protocol = "TCP4" if source_ip.version == 4 else "TCP6"
    return (
        f"PROXY {protocol} {source_ip} {destination_ip} {source[1]} {destination[1]}\r\n"
    ).encode("ascii")


# PROXY v2 TLV types (the spec's PP2_TYPE_* and PP2_SUBTYPE_SSL_*) and SSL client flags.
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04


def tlv(kind: int, value: bytes) -> bytes:
    """One type-length-value entry of a v2 header."""
    if len(value) > 0xFFFF:
        raise ValueError(f"TLV 0x{kind:02x} value of {len(value)} bytes is over 65535")
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


def ssl_tlv(version: str, *, client_cert: bool = False) -> bytes:
    """PP2_TYPE_SSL for a connection whose TLS was terminated, as HAProxy's send-proxy-v2-ssl
    writes it: the client flags, verify 0 (a client certificate, if any, was accepted), and
    the TLS version."""
    flags = PP2_CLIENT_SSL | (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS if client_cert else 0)
    value = bytes([flags]) + (0).to_bytes(4, "big") + tlv(PP2_SUBTYPE_SSL_VERSION, version.encode())
    return tlv(PP2_TYPE_SSL, value)


def build_v2(source: Endpoint, destination: Endpoint, tlvs: bytes = b"") -> bytes:
    """The v2 header announcing ``source`` -> ``destination``, with ``tlvs`` (built by `tlv`).

    PROXY over TCP4/TCP6 under the same rules as :func:`build_v1`; when those do not give one
    IP family, a LOCAL header with AF_UNSPEC (the receiver then keeps the socket's addresses),
    which carries no TLVs.
    """
    pair = _ip_pair(source, destination)
    if pair is None:
        return _V2_LOCAL_UNSPEC
    source_ip, destination_ip = pair
    family = _V2_TCP4 if source_ip.version == 4 else _V2_TCP6
    block = (
        source_ip.packed
        + destination_ip.packed
        + source[1].to_bytes(2, "big")
        + destination[1].to_bytes(2, "big")
    )
    return (
        V2_SIGNATURE
        + bytes([_V2_VERSION << 4 | _V2_COMMAND_PROXY, family])
        + (len(block) + len(tlvs)).to_bytes(2, "big")
        + block
        + tlvs
    )


def _ip_pair(
    source: Endpoint, destination: Endpoint
) -> tuple[IPv4Address, IPv4Address] | tuple[IPv6Address, IPv6Address] | None:
    for _, port in (source, destination):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} is outside 0-65535")
    source_ip = _endpoint_ip(source[0])
    destination_ip = _endpoint_ip(destination[0])
    if isinstance(source_ip, IPv4Address) and isinstance(destination_ip, IPv4Address):
        return source_ip, destination_ip
    if isinstance(source_ip, IPv6Address) and isinstance(destination_ip, IPv6Address):
        return source_ip, destination_ip
    return None


def _endpoint_ip(host: str) -> IPv4Address | IPv6Address | None:
    # A zone ("fe80::1%eth0") cannot travel in either header version; Go drops it too.
    try:
        ip = ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; announce them as IPv4 so
        # they pair with an IPv4 destination, as Go's To4() makes go-proxyproto do.
        return ip.ipv4_mapped
    return ip
