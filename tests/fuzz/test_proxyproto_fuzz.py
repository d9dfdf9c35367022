"""Fuzz properties of the PROXY protocol reader: total, stable, NEED_MORE only for a prefix."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.proxy.proxyproto import (
    ABSENT,
    HEADER,
    MALFORMED,
    NEED_MORE,
    V1_MAX_LENGTH,
    V1_SIGNATURE,
    V2_SIGNATURE,
    ProxyResult,
    build_v1,
    build_v2,
    read_proxy_header,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

v1_like = st.builds(lambda rest: V1_SIGNATURE + rest,
                    st.binary(max_size=120) | st.text(alphabet="TCP46UNKOW .:0123456789abcdef\r\n",
                                                      max_size=110).map(str.encode))
v2_like = st.builds(lambda head, rest: V2_SIGNATURE + head + rest,
                    st.sampled_from([b"\x21\x11", b"\x21\x21", b"\x20\x00", b"\x21\x31",
                                     b"\x22\x11", b"\x31\x11", b"\x21\x99"]),
                    st.binary(max_size=300))
anything = st.binary(max_size=300) | v1_like | v2_like

ipv4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1)).map(str)
# IPv4-mapped addresses are announced as IPv4 on purpose, so they do not read back the same.
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1)).filter(
    lambda address: address.ipv4_mapped is None).map(str)
ports = st.integers(0, 65535)
same_family = (st.tuples(st.tuples(ipv4, ports), st.tuples(ipv4, ports))
               | st.tuples(st.tuples(ipv6, ports), st.tuples(ipv6, ports)))


REGRESSIONS = [
    b"PROXY", b"PROXY " + b"A" * 200, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    V2_SIGNATURE + b"\x21\x11\xff\xff", V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes(12),
    V2_SIGNATURE + b"\x21\x11\x00\x0f" + bytes(12) + b"\x01\x00\x05",
    b"PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x00",
]


# -- properties, as plain checks the atheris entry point (fuzz/proxyproto.py) shares -----


def check_total(data: bytes) -> ProxyResult:
    result = read_proxy_header(data)
    assert isinstance(result, ProxyResult)
    assert (result.header is not None) == (result.kind is HEADER)
    assert bool(result.reason) == (result.kind is MALFORMED)
    if result.header is not None:
        assert 0 < result.header.length <= len(data)
    return result


def check_stable(data: bytes, more: bytes) -> None:
    """A verdict other than NEED_MORE does not change when more bytes follow."""
    alone = read_proxy_header(data)
    if alone.kind is not NEED_MORE:
        assert read_proxy_header(data + more) == alone


def check_need_more_only_for_a_prefix(data: bytes) -> None:
    """NEED_MORE only for a proper prefix no longer than the largest header it could start."""
    if read_proxy_header(data).kind is not NEED_MORE:
        return
    if data.startswith(V1_SIGNATURE):
        assert len(data) < V1_MAX_LENGTH and b"\n" not in data
    elif data.startswith(V2_SIGNATURE):
        assert len(data) < 16 or len(data) < 16 + int.from_bytes(data[14:16], "big")
    else:
        assert V1_SIGNATURE.startswith(data) or V2_SIGNATURE.startswith(data)


def check_one_input(data: bytes) -> None:
    """Every property for one input: the body of the atheris entry point."""
    check_total(data)
    check_need_more_only_for_a_prefix(data)
    for split in range(0, len(data), 1 + len(data) // 8):
        check_stable(data[:split], data[split:])


@pytest.mark.parametrize("data", REGRESSIONS)
def test_known_edge_inputs_hold_every_property(data: bytes) -> None:
    check_one_input(data)


@FAST
@given(anything)
def test_the_reader_is_total(data: bytes) -> None:
    check_total(data)


@FAST
@given(anything, st.binary(min_size=1, max_size=200))
def test_a_verdict_does_not_change_when_more_bytes_follow(data: bytes, more: bytes) -> None:
    check_stable(data, more)


@FAST
@given(anything)
def test_need_more_only_for_a_prefix_no_longer_than_the_largest_header(data: bytes) -> None:
    check_need_more_only_for_a_prefix(data)


@FAST
@given(same_family, st.booleans(), st.binary(max_size=40), st.data())
def test_a_built_header_reads_back_and_each_of_its_prefixes_needs_more(
        endpoints: tuple[tuple[str, int], tuple[str, int]], v2: bool, payload: bytes,
        data: st.DataObject) -> None:
    source, destination = endpoints
    header = build_v2(source, destination) if v2 else build_v1(source, destination)

    result = read_proxy_header(header + payload)

    assert result.kind is HEADER and result.header is not None
    assert result.header.length == len(header)
    assert (result.header.source, result.header.destination) == (source, destination)
    cut = data.draw(st.integers(0, len(header) - 1), label="cut")
    assert read_proxy_header(header[:cut]).kind is NEED_MORE


@FAST
@given(st.binary(min_size=1, max_size=100))
def test_bytes_that_start_neither_signature_are_absent_at_once(data: bytes) -> None:
    if not (V1_SIGNATURE.startswith(data[:5]) or V2_SIGNATURE.startswith(data[:12])):
        assert read_proxy_header(data).kind is ABSENT
