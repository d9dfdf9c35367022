"""The sans-IO preamble: PROXY header, Postgres SSLRequest and ClientHello, fed bytes only."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.observability.record import CloseReason
from switchyard.proxy import preamble as pre
from switchyard.proxy.proxyproto import build_v2
from switchyard.tls.clienthello import MAX_RECORDS
from switchyard.tls.postgres import SSL_REQUEST
from tests.unit.test_clienthello import python_hello, reframe

CLIENT = ("192.0.2.10", 40000)


def feed_all(preamble: pre.Preamble, data: bytes, step: int = 0) -> tuple[list[pre.Event], int]:
    """Feed `data` whole (step 0) or `step` bytes at a time, the way a connection does:
    after Reply or Addressed it feeds b"" to go on. Returns the events that are not
    NEED_MORE and how many bytes were fed before the last of them."""
    events: list[pre.Event] = []
    chunks = [data] if step == 0 else [data[i:i + step] for i in range(0, len(data), step)]
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        event = preamble.feed(chunk)
        while event is not pre.NEED_MORE:
            events.append(event)
            if isinstance(event, pre.Peeked | pre.Refused):
                return events, fed
            event = preamble.feed(b"")
    return events, fed


def test_plain_bytes_are_peeked_at_once_with_every_byte_kept() -> None:
    events, _ = feed_all(pre.Preamble(CLIENT), b"EHLO example.com\r\n")
    [peeked] = events
    assert isinstance(peeked, pre.Peeked)
    assert peeked.data == b"EHLO example.com\r\n"
    assert not peeked.meta.tls and peeked.meta.client_ip == "192.0.2.10"


def test_tls_hello_fed_one_byte_at_a_time_gives_sni_alpn_and_all_bytes() -> None:
    hello = python_hello("db.example.com", ("postgresql",))
    events, fed = feed_all(pre.Preamble(CLIENT), hello + b"after", step=1)
    [peeked] = events
    assert isinstance(peeked, pre.Peeked) and peeked.hello is not None
    assert (peeked.meta.sni, peeked.meta.alpn, peeked.meta.tls) == (
        "db.example.com", ("postgresql",), True)
    assert fed == len(hello)  # the verdict comes with the hello's last byte
    assert peeked.data == hello


def test_postgres_ssl_request_is_answered_then_the_hello_read() -> None:
    hello = python_hello("pg.example.com", ())
    for step in (0, 1, 3):
        events, _ = feed_all(pre.Preamble(CLIENT), SSL_REQUEST + hello, step=step)
        reply, peeked = events
        assert reply == pre.Reply(b"S")
        assert isinstance(peeked, pre.Peeked) and peeked.postgres
        assert peeked.data == hello  # the SSLRequest itself is not handed on


def test_postgres_ssl_request_followed_by_plain_bytes_is_refused() -> None:
    events, _ = feed_all(pre.Preamble(CLIENT), SSL_REQUEST + b"hello")
    assert events[-1] == pre.Refused(CloseReason.MALFORMED,
                                     "Postgres SSLRequest not followed by a TLS ClientHello")


def test_a_prefix_of_the_ssl_request_waits() -> None:
    preamble = pre.Preamble(CLIENT)
    assert preamble.feed(SSL_REQUEST[:3]) is pre.NEED_MORE


def test_trusted_proxy_header_sets_addresses_then_peeking_goes_on() -> None:
    header = build_v2(("203.0.113.5", 5555), ("198.51.100.1", 443))
    preamble = pre.Preamble(CLIENT, proxy_trusted=True)
    assert preamble.reading_proxy_header
    events, _ = feed_all(preamble, header + b"GET /", step=1)
    addressed, peeked = events
    assert addressed is pre.ADDRESSED
    assert preamble.client == ("203.0.113.5", 5555)
    assert preamble.local == ("198.51.100.1", 443)
    assert isinstance(peeked, pre.Peeked)
    assert peeked.data == b"G"  # fed one byte at a time: plain from its first byte
    assert peeked.meta.client_ip == "203.0.113.5"


def test_untrusted_proxy_header_is_consumed_and_not_believed() -> None:
    preamble = pre.Preamble(CLIENT, proxy_trusted=False)
    events, _ = feed_all(preamble, b"PROXY TCP4 10.9.9.9 127.0.0.1 5555 80\r\nhi")
    addressed, peeked = events
    assert addressed is pre.ADDRESSED and preamble.client == CLIENT
    assert isinstance(peeked, pre.Peeked) and peeked.data == b"hi"


def test_malformed_proxy_header_is_refused() -> None:
    events, _ = feed_all(pre.Preamble(CLIENT, proxy_trusted=True), b"PROXY TCP4 nonsense\r\n")
    [refused] = events
    assert isinstance(refused, pre.Refused) and refused.reason is CloseReason.MALFORMED


def test_no_proxy_header_in_time_counts_as_none_then_a_second_expiry_refuses() -> None:
    preamble = pre.Preamble(CLIENT, proxy_trusted=True)
    assert preamble.expire() is pre.ADDRESSED
    assert preamble.expire() == pre.Refused(
        CloseReason.PEEK_TIMEOUT, "timed out waiting for the client's first bytes")


def test_zero_length_records_are_refused_at_the_first_one() -> None:
    events, fed = feed_all(pre.Preamble(CLIENT), b"\x16\x03\x01\x00\x00" * 1000, step=5)
    [refused] = events
    assert isinstance(refused, pre.Refused) and "empty TLS handshake record" in refused.detail
    assert fed == 5


def test_a_hello_in_too_many_records_is_refused_with_bounded_buffering() -> None:
    stream = reframe(bytes([1, 0, 0x0B, 0xB8]) + b"\x00" * 3000, [1])  # a 3,000-byte hello
    preamble = pre.Preamble(CLIENT)
    events, fed = feed_all(preamble, stream, step=6)
    [refused] = events
    assert isinstance(refused, pre.Refused) and "more than" in refused.detail
    assert fed <= 6 * (MAX_RECORDS + 1)


def test_trickled_records_cost_linear_time() -> None:
    # 2,000 one-byte records fed a byte at a time: a quadratic reader takes seconds here.
    body = bytes([1, 0, 0xFF, 0xFF]) + b"\x00" * 1996
    stream = reframe(body, [1])
    preamble = pre.Preamble(CLIENT)
    began = time.process_time()
    for i in range(len(stream)):
        assert preamble.feed(stream[i:i + 1]) is pre.NEED_MORE
    assert time.process_time() - began < 2.0


@settings(max_examples=60, deadline=None)
@given(prefix=st.sampled_from([b"", SSL_REQUEST]),
       body=st.one_of(st.binary(max_size=64), st.just(python_hello())),
       step=st.integers(min_value=0, max_value=17))
def test_feeding_in_any_chunks_gives_the_same_verdict(prefix: bytes, body: bytes,
                                                      step: int) -> None:
    whole, _ = feed_all(pre.Preamble(CLIENT), prefix + body)
    chunked, fed = feed_all(pre.Preamble(CLIENT), prefix + body, step=step)

    def verdict(events: list[pre.Event]) -> list[object]:
        return [(e.meta, e.hello, e.postgres) if isinstance(e, pre.Peeked) else e
                for e in events]

    assert verdict(whole) == verdict(chunked)
    if chunked and isinstance(chunked[-1], pre.Peeked):
        # Every byte read before the verdict is handed on, and nothing else.
        assert chunked[-1].data == (prefix + body)[len(SSL_REQUEST) if chunked[-1].postgres
                                                   else 0:fed]
