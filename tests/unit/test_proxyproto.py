"""Tests for the sans-IO PROXY protocol reader and writers (HAProxy spec v1/v2, spec 6.5 and 9.2)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.proxy.proxyproto import (
    ABSENT,
    HEADER,
    MALFORMED,
    NEED_MORE,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyResult,
    build_v1,
    build_v2,
    read_proxy_header,
)


def header_of(data: bytes) -> ProxyHeader:
    result = read_proxy_header(data)
    assert result.kind is HEADER, result.reason
    assert result.header is not None
    return result.header


def malformed_reason(data: bytes) -> str:
    result = read_proxy_header(data)
    assert result.kind is MALFORMED
    assert result.header is None
    return result.reason


def v2(ver_cmd: int, family: int, block: bytes, length: int | None = None) -> bytes:
    """A v2 header with an explicit length (defaults to the block's)."""
    size = len(block) if length is None else length
    return V2_SIGNATURE + bytes([ver_cmd, family]) + size.to_bytes(2, "big") + block


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


# -- detection ----------------------------------------------------------------------------


def test_empty_input_needs_more() -> None:
    assert read_proxy_header(b"").kind is NEED_MORE


@pytest.mark.parametrize("data", [b"P", b"PROX", b"\r", b"\r\n\r\n\x00\r\nQUI"])
def test_signature_prefix_needs_more(data: bytes) -> None:
    assert read_proxy_header(data).kind is NEED_MORE


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PRIVMSG",
        b"PROT",
        b"\x16\x03\x01",
        b"\r\n\r\n\x01",
        b"\r\n\r\n\x00\r\nQUIX",
        b"\x00",
    ],
    ids=["http", "other-P-word", "P-then-differs", "tls", "v2-sig-byte-5", "v2-sig-byte-12", "nul"],
)
def test_absent_as_soon_as_the_bytes_leave_both_signatures(data: bytes) -> None:
    assert read_proxy_header(data).kind is ABSENT


def test_input_types_bytearray_and_memoryview_are_accepted() -> None:
    data = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
    assert read_proxy_header(bytearray(data)) == read_proxy_header(data)
    assert read_proxy_header(memoryview(data)) == read_proxy_header(data)


# -- version 1 ----------------------------------------------------------------------------


def test_v1_spec_example_before_an_http_request() -> None:
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    header = header_of(line + b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n")
    assert header == ProxyHeader(
        version=1,
        command="PROXY",
        source=("192.168.0.1", 56324),
        destination=("192.168.0.11", 443),
        length=len(line),
    )


def test_v1_tcp6_longest_line_from_the_spec() -> None:
    full = ":".join(["ffff"] * 8)
    line = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    assert len(line) == 104
    header = header_of(line)
    assert header.source == ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)


def test_v1_ipv6_addresses_are_reported_in_canonical_form() -> None:
    header = header_of(b"PROXY TCP6 2001:DB8:0:0::1 ::ffff:1.2.3.4 0 80\r\n")
    assert header.source == ("2001:db8::1", 0)
    assert header.destination == ("::ffff:102:304", 80)


def test_v1_unknown_short_form_keeps_socket_addresses() -> None:
    assert header_of(b"PROXY UNKNOWN\r\n") == ProxyHeader(1, "PROXY", None, None, 15)


def test_v1_unknown_worst_case_107_bytes_is_accepted_and_its_rest_ignored() -> None:
    full = ":".join(["ffff"] * 8)
    line = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    assert len(line) == V1_MAX_LENGTH
    assert header_of(line).length == V1_MAX_LENGTH
    assert header_of(b"PROXY UNKNOWN whatever \x01 here\r\n").source is None


def test_v1_line_without_crlf_in_107_bytes_is_malformed() -> None:
    line = b"PROXY UNKNOWN " + b"f" * (V1_MAX_LENGTH - 14)
    assert len(line) == V1_MAX_LENGTH
    assert read_proxy_header(line[:-1]).kind is NEED_MORE
    assert "107" in malformed_reason(line)


def test_v1_crlf_one_byte_past_the_limit_is_malformed() -> None:
    line = b"PROXY UNKNOWN " + b"f" * (V1_MAX_LENGTH - 15) + b"\r\n"
    assert len(line) == V1_MAX_LENGTH + 1
    assert read_proxy_header(line).kind is MALFORMED


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF"),
        (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "space"),
        (b"PROXY\r\n", "no protocol"),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"),
        (b"PROXY UNKNOWNX\r\n", "protocol"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "fields"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "fields"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "address"),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "address"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "address"),
        (b"PROXY TCP4 \xd9\xa1.2.3.4 5.6.7.8 1 2\r\n", "address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", "port"),
    ],
    ids=[
        "bare-lf",
        "no-space-after-signature",
        "nothing-after-signature",
        "lower-case-protocol",
        "udp",
        "unknown-with-suffix",
        "five-fields",
        "trailing-space",
        "double-space",
        "ipv4-leading-zero",
        "ipv4-three-octets",
        "ipv4-octet-256",
        "tcp4-with-ipv6",
        "tcp6-with-ipv4",
        "ipv6-zone",
        "non-ascii-digit",
        "port-65536",
        "port-plus-sign",
        "port-leading-zero",
        "port-negative",
        "port-empty",
        "port-hex",
    ],
)
def test_v1_invalid_lines_are_malformed(line: bytes, expected: str) -> None:
    assert expected in malformed_reason(line)


def test_v1_port_zero_is_valid() -> None:
    assert header_of(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n").source == ("1.2.3.4", 0)


# -- version 2 ----------------------------------------------------------------------------


def test_v2_tcp4_with_tlvs() -> None:
    tlvs = tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x04, b"")
    block = bytes([192, 168, 0, 1, 192, 168, 0, 11]) + (56324).to_bytes(2, "big") + b"\x01\xbb"
    data = v2(0x21, 0x11, block + tlvs)
    header = header_of(data + b"payload")
    assert header == ProxyHeader(
        version=2,
        command="PROXY",
        source=("192.168.0.1", 56324),
        destination=("192.168.0.11", 443),
        length=len(data),
        tlvs=((0x01, b"h2"), (0x02, b"example.com"), (0x04, b"")),
    )


def test_v2_tcp6() -> None:
    source = IPv6Address("2001:db8::1")
    destination = IPv6Address("::ffff:10.0.0.1")
    block = source.packed + destination.packed + b"\x00\x50\x01\xbb"
    header = header_of(v2(0x21, 0x21, block))
    assert header.source == ("2001:db8::1", 80)
    assert header.destination == ("::ffff:a00:1", 443)
    assert header.length == 16 + 36


def test_v2_udp_over_ipv4_still_reports_endpoints() -> None:
    block = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x00\x35\x00\x35"
    assert header_of(v2(0x21, 0x12, block)).source == ("10.0.0.1", 53)


def test_v2_local_ignores_the_address_block() -> None:
    block = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x00\x35\x00\x35"
    header = header_of(v2(0x20, 0x11, block))
    assert header.command == "LOCAL"
    assert header.source is None and header.destination is None
    assert header.length == 28


def test_v2_local_unspec_with_zero_length_is_sixteen_bytes() -> None:
    assert header_of(v2(0x20, 0x00, b"") + b"data") == ProxyHeader(2, "LOCAL", None, None, 16)


@pytest.mark.parametrize("family", [0x00, 0x31, 0x32], ids=["unspec", "unix-stream", "unix-dgram"])
def test_v2_proxy_without_ip_family_has_no_endpoints(family: int) -> None:
    block = bytes(216 if family else 0) + tlv(0xE0, b"custom")
    header = header_of(v2(0x21, family, block))
    assert header.command == "PROXY"
    assert header.source is None and header.destination is None
    assert header.tlvs == ((0xE0, b"custom"),)


@pytest.mark.parametrize("ver_cmd", [0x11, 0x31, 0x01, 0xF1])
def test_v2_version_other_than_2_is_malformed_at_byte_13(ver_cmd: int) -> None:
    assert "version" in malformed_reason(V2_SIGNATURE + bytes([ver_cmd]))


@pytest.mark.parametrize("ver_cmd", [0x22, 0x2F])
def test_v2_unknown_command_is_malformed(ver_cmd: int) -> None:
    assert "command" in malformed_reason(V2_SIGNATURE + bytes([ver_cmd]))


@pytest.mark.parametrize("family", [0x01, 0x10, 0x13, 0x23, 0x40, 0xFF])
def test_v2_undefined_family_byte_is_malformed_at_byte_14(family: int) -> None:
    assert "family" in malformed_reason(V2_SIGNATURE + bytes([0x21, family]))


@pytest.mark.parametrize(
    ("ver_cmd", "family", "length"),
    [(0x21, 0x11, 11), (0x21, 0x21, 35), (0x21, 0x21, 12), (0x21, 0x31, 215), (0x20, 0x11, 0)],
    ids=["inet-11", "inet6-35", "inet6-12", "unix-215", "local-inet-0"],
)
def test_v2_length_shorter_than_the_address_block_is_malformed(
    ver_cmd: int, family: int, length: int
) -> None:
    # Decided from the fixed 16 bytes: no need to wait for the announced bytes.
    assert "shorter" in malformed_reason(v2(ver_cmd, family, b"", length=length))


def test_v2_truncated_tlv_header_is_malformed() -> None:
    block = bytes(12) + tlv(0x01, b"h2") + b"\x02\x00"
    assert "TLV header truncated" in malformed_reason(v2(0x21, 0x11, block))


def test_v2_tlv_overrunning_the_header_is_malformed() -> None:
    block = bytes(12) + b"\x02\x00\x05abc"
    assert "overruns" in malformed_reason(v2(0x21, 0x11, block))


def test_v2_waits_for_the_whole_announced_length() -> None:
    data = v2(0x21, 0x11, bytes(12) + tlv(0x05, b"id"))
    assert read_proxy_header(data[:-1]).kind is NEED_MORE
    assert read_proxy_header(data).kind is HEADER


# -- writers ------------------------------------------------------------------------------


def test_build_v1_writes_the_spec_example() -> None:
    assert (
        build_v1(("192.168.0.1", 56324), ("192.168.0.11", 443))
        == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    )


def test_build_v1_tcp6_uses_compressed_addresses() -> None:
    assert (
        build_v1(("2001:db8:0:0:0:0:0:1", 1), ("::1", 2)) == b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    )


def test_build_v2_tcp4_bytes() -> None:
    assert build_v2(("1.2.3.4", 5), ("6.7.8.9", 443)) == (
        V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([1, 2, 3, 4, 6, 7, 8, 9]) + b"\x00\x05\x01\xbb"
    )


def test_build_v2_tcp6_bytes() -> None:
    expected = (
        V2_SIGNATURE
        + b"\x21\x21\x00\x24"
        + IPv6Address("2001:db8::1").packed
        + IPv6Address("::1").packed
        + b"\xff\xff\x00\x00"
    )
    assert build_v2(("2001:db8::1", 65535), ("::1", 0)) == expected


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        (("1.2.3.4", 1), ("::1", 2)),
        (("::1", 1), ("1.2.3.4", 2)),
        (("/run/app.sock", 0), ("1.2.3.4", 2)),
        (("", 0), ("", 0)),
        (("example.com", 1), ("1.2.3.4", 2)),
    ],
    ids=["v4-to-v6", "v6-to-v4", "unix-path", "empty", "hostname"],
)
def test_mixed_or_non_ip_endpoints_give_unknown_and_local(
    source: tuple[str, int], destination: tuple[str, int]
) -> None:
    assert build_v1(source, destination) == b"PROXY UNKNOWN\r\n"
    assert build_v2(source, destination) == V2_SIGNATURE + b"\x20\x00\x00\x00"


def test_ipv4_mapped_ipv6_is_announced_as_ipv4() -> None:
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    source, destination = ("::ffff:203.0.113.7", 40000), ("192.0.2.1", 443)
    assert build_v1(source, destination) == b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n"
    assert header_of(build_v2(source, destination)).source == ("203.0.113.7", 40000)


def test_ipv6_zone_is_dropped_when_writing() -> None:
    assert build_v1(("fe80::1%eth0", 1), ("fe80::2", 2)) == b"PROXY TCP6 fe80::1 fe80::2 1 2\r\n"


@pytest.mark.parametrize("port", [-1, 65536])
def test_writers_refuse_ports_outside_16_bits(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        build_v1(("1.2.3.4", port), ("5.6.7.8", 1))
    with pytest.raises(ValueError, match="port"):
        build_v2(("1.2.3.4", 1), ("5.6.7.8", port))


# -- streaming and round trips ------------------------------------------------------------

STREAM_CASES = [
    build_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)),
    build_v1(("2001:db8::1", 1), ("2001:db8::2", 2)),
    b"PROXY UNKNOWN\r\n",
    build_v2(("1.2.3.4", 5), ("6.7.8.9", 443)),
    build_v2(("2001:db8::1", 1), ("2001:db8::2", 2)),
    build_v2(("a", 0), ("b", 0)),
    v2(0x21, 0x31, bytes(216) + tlv(0x02, b"host")),
]


@pytest.mark.parametrize("header", STREAM_CASES)
def test_every_proper_prefix_needs_more_then_the_header_is_read(header: bytes) -> None:
    for cut in range(len(header)):
        assert read_proxy_header(header[:cut]).kind is NEED_MORE, cut
    assert header_of(header + b"\x16\x03\x01").length == len(header)


ports = st.integers(0, 65535)


def as_announced(ip: IPv4Address | IPv6Address) -> str:
    """The text a header carries for ``ip``: IPv4-mapped IPv6 travels as IPv4."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@settings(max_examples=300)
@given(
    version=st.sampled_from([4, 6]),
    data=st.data(),
    source_port=ports,
    destination_port=ports,
    payload=st.binary(max_size=20),
)
def test_writer_output_reads_back_for_either_header_version(
    version: int, data: st.DataObject, source_port: int, destination_port: int, payload: bytes
) -> None:
    addresses = st.ip_addresses(v=4) if version == 4 else st.ip_addresses(v=6)
    source_ip = data.draw(addresses)
    destination_ip = data.draw(addresses)
    source = (str(source_ip), source_port)
    destination = (str(destination_ip), destination_port)
    expected_source = (as_announced(source_ip), source_port)
    expected_destination = (as_announced(destination_ip), destination_port)
    same_family = (
        ip_address(expected_source[0]).version == ip_address(expected_destination[0]).version
    )
    for build in (build_v1, build_v2):
        wire = build(source, destination)
        header = header_of(wire + payload)
        assert header.length == len(wire)
        if same_family:
            assert header.command == "PROXY"
            assert (header.source, header.destination) == (expected_source, expected_destination)
        else:
            assert header.source is None and header.destination is None


def assert_well_formed(result: ProxyResult) -> None:
    assert (result.header is not None) == (result.kind is HEADER)
    assert bool(result.reason) == (result.kind is MALFORMED)
    if result.header is not None:
        assert 0 < result.header.length


@settings(max_examples=500)
@given(
    st.binary(max_size=300)
    | st.binary(max_size=120).map(lambda rest: b"PROXY " + rest)
    | st.binary(max_size=300).map(lambda rest: V2_SIGNATURE + rest)
    | st.binary(max_size=60).map(lambda rest: V2_SIGNATURE + b"\x21\x11\x00\x0c" + rest)
)
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = read_proxy_header(data)
    assert_well_formed(result)
    if result.header is not None:
        assert result.header.length <= len(data)


@settings(max_examples=300)
@given(
    tokens=st.lists(
        st.sampled_from(["TCP4", "TCP6", "UNKNOWN", "1.2.3.4", "::1", "0", "65535", "", "01"])
        | st.text(alphabet="0123456789abcdef.:+%", max_size=8),
        max_size=7,
    )
)
def test_v1_lines_built_from_plausible_tokens_never_raise(tokens: list[str]) -> None:
    line = ("PROXY " + " ".join(tokens) + "\r\n").encode()
    assert_well_formed(read_proxy_header(line))
