"""Tests for the Postgres SSLRequest detector (spec 4.3 step 1, 4.6)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.tls.postgres import SSL_REQUEST, detect_ssl_request


def test_ssl_request_is_length_8_and_code_80877103() -> None:
    # What libpq sends: Int32 length, Int32 code 1234 << 16 | 5679.
    assert struct.pack("!ii", 8, 80877103) == SSL_REQUEST


def test_complete_ssl_request_is_detected() -> None:
    assert detect_ssl_request(SSL_REQUEST) is True


def test_ssl_request_followed_by_a_client_hello_is_detected() -> None:
    assert detect_ssl_request(SSL_REQUEST + b"\x16\x03\x01\x02\x00\x01") is True


@pytest.mark.parametrize("length", range(8))
def test_proper_prefix_needs_more(length: int) -> None:
    assert detect_ssl_request(SSL_REQUEST[:length]) is None


@pytest.mark.parametrize("position", range(8))
def test_first_differing_byte_says_no_without_waiting(position: int) -> None:
    changed = SSL_REQUEST[:position] + bytes([SSL_REQUEST[position] ^ 0x01])
    assert detect_ssl_request(changed) is False


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!ii", 8, 80877104),  # GSSENCRequest
        struct.pack("!ii", 16, 80877102),  # CancelRequest
        struct.pack("!ii", 41, 196608),  # StartupMessage, protocol 3.0
        b"\x16\x03\x01\x02\x00",  # a direct TLS ClientHello
        b"GET / HTTP/1.1\r\n",
    ],
    ids=["gssenc-request", "cancel-request", "startup-message", "tls", "http"],
)
def test_other_first_messages_are_not_ssl_requests(data: bytes) -> None:
    assert detect_ssl_request(data) is False


def test_bytearray_and_memoryview_are_accepted() -> None:
    assert detect_ssl_request(bytearray(SSL_REQUEST)) is True
    assert detect_ssl_request(memoryview(SSL_REQUEST)[:3]) is None


@given(st.binary(max_size=16) | st.binary(max_size=8).map(lambda tail: SSL_REQUEST[:4] + tail))
def test_verdict_matches_the_prefix_definition(data: bytes) -> None:
    if data.startswith(SSL_REQUEST):
        expected: bool | None = True
    elif SSL_REQUEST.startswith(data):
        expected = None
    else:
        expected = False
    assert detect_ssl_request(data) is expected
