"""Go's spelling of field names and the trailer block written after the last chunk."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchyard.http.exchange import trailer_block
from switchyard.http.message import Headers, canonical_name
from switchyard.http.rewrite import response_headers_for_client

_NAMES = st.binary(min_size=1, max_size=20).filter(lambda name: b":" not in name)


def test_canonical_name_capitalises_each_dash_separated_word() -> None:
    assert canonical_name(b"grpc-status") == b"Grpc-Status"
    assert canonical_name(b"X-SUM") == b"X-Sum"
    assert canonical_name(b"content-md5") == b"Content-Md5"


def test_canonical_name_leaves_a_name_with_a_non_token_byte_alone() -> None:
    assert canonical_name(b"bad name") == b"bad name"
    assert canonical_name(b"") == b""


@given(_NAMES)
def test_canonical_name_is_idempotent_and_ignores_case(name: bytes) -> None:
    once = canonical_name(name)
    assert canonical_name(once) == once
    assert once.lower() == name.lower() or once == name


def test_trailer_block_sorts_by_name_and_keeps_the_order_of_values() -> None:
    block = trailer_block(Headers([(b"x-sum", b"2"), (b"grpc-status", b"0"), (b"X-Sum", b"1")]))
    assert block == b"Grpc-Status: 0\r\nX-Sum: 2\r\nX-Sum: 1\r\n"


def test_the_trailer_announcement_reaches_the_client() -> None:
    fields, _ = response_headers_for_client(
        [(b"Trailer", b"X-Sum"), (b"Transfer-Encoding", b"chunked")], switching=False)
    assert fields == [(b"Trailer", b"X-Sum")]
