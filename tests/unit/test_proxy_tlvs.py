"""PROXY v2 TLVs out: what each transport option puts in the header, read back by our reader."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchyard.proxy.dial import TerminatedTLS, proxy_header
from switchyard.proxy.proxyproto import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_SSL,
    ProxyKind,
    build_v2,
    read_proxy_header,
    tlv,
)
from switchyard.services import ServersTransport


def tlvs_of(header: bytes) -> dict[int, bytes]:
    found = read_proxy_header(header)
    assert found.kind is ProxyKind.HEADER and found.header is not None
    assert found.header.length == len(header)
    return dict(found.header.tlvs)


@given(values=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=6))
def test_any_tlvs_read_back_in_order(values: list[tuple[int, bytes]]) -> None:
    header = build_v2(("192.0.2.1", 4000), ("198.51.100.2", 443),
                      b"".join(tlv(kind, value) for kind, value in values))
    found = read_proxy_header(header)
    assert found.header is not None and list(found.header.tlvs) == values


def test_a_transport_sends_only_the_tlvs_it_lists_and_knows() -> None:
    transport = ServersTransport(proxy_protocol_version=2,
                                 proxy_protocol_tlvs=("authority", "alpn", "ssl"))
    local = lambda: ("198.51.100.2", 443)
    assert tlvs_of(proxy_header(transport, ("192.0.2.1", 4000), local, sni="a.test")) == {
        PP2_TYPE_AUTHORITY: b"a.test"}  # passed through: no ALPN or SSL of ours
    terminated = tlvs_of(proxy_header(transport, ("192.0.2.1", 4000), local, sni="a.test",
                                      tls=TerminatedTLS("TLSv1.3", "h2")))
    assert terminated[PP2_TYPE_ALPN] == b"h2"
    assert terminated[PP2_TYPE_SSL] == b"\x01\x00\x00\x00\x00\x21\x00\x07TLSv1.3"
    plain = ServersTransport(proxy_protocol_version=2)
    assert tlvs_of(proxy_header(plain, ("192.0.2.1", 4000), local, sni="a.test")) == {}
