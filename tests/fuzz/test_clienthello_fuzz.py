"""Fuzz properties of the ClientHello reader: total, stable, NEED_MORE only for a prefix."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchyard.tls.clienthello import (
    HELLO,
    MALFORMED,
    MAX_RECORD_LENGTH,
    MAX_RECORDS,
    NEED_MORE,
    ClientHelloReader,
    HelloResult,
    read_client_hello,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Building a valid hello costs more per example than random bytes.
BUILT = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The input that grew one connection's memory without bound (issue 13), and its kin.
EMPTY_RECORD = bytes.fromhex("1603010000")
REGRESSIONS = [EMPTY_RECORD, EMPTY_RECORD * 1000, b"\x16\x03\x01\x00\x01\x01" * (MAX_RECORDS + 1),
               b"\x16\x03\x01\xff\xff", b"\x16", b"\x80"]


# -- building hellos ----------------------------------------------------------------------


def _vector(length_bytes: int, body: bytes) -> bytes:
    return len(body).to_bytes(length_bytes, "big") + body


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!H", kind) + _vector(2, body)


def hello_message(sni: bytes | None, alpn: list[bytes], versions: list[int],
                  extra: list[tuple[int, bytes]]) -> bytes:
    """A ClientHello handshake message (header included) as RFC 8446 lays it out."""
    extensions = b""
    if sni is not None:
        extensions += _extension(0, _vector(2, b"\x00" + _vector(2, sni)))
    if alpn:
        extensions += _extension(16, _vector(2, b"".join(_vector(1, p) for p in alpn)))
    if versions:
        extensions += _extension(43, _vector(1, b"".join(struct.pack("!H", v) for v in versions)))
    for kind, body in extra:
        extensions += _extension(kind, body)
    body = (b"\x03\x03" + bytes(32) + _vector(1, bytes(32)) + _vector(2, b"\x13\x01\x00\x2f")
            + _vector(1, b"\x00") + _vector(2, extensions))
    return b"\x01" + _vector(3, body)


def frame(message: bytes, sizes: list[int]) -> bytes:
    """``message`` cut into handshake records of the given sizes (the rest in the last one)."""
    records, pos = b"", 0
    for size in sizes:
        if pos >= len(message):
            break
        chunk = message[pos:pos + size]
        records += b"\x16\x03\x01" + _vector(2, chunk)
        pos += len(chunk)
    while pos < len(message):
        chunk = message[pos:pos + MAX_RECORD_LENGTH]
        records += b"\x16\x03\x01" + _vector(2, chunk)
        pos += len(chunk)
    return records


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
host_names = st.lists(labels, min_size=1, max_size=4).map(lambda parts: ".".join(parts).encode())
protocols = st.lists(st.binary(min_size=1, max_size=12), max_size=4)
versions = st.lists(st.sampled_from([0x0304, 0x0303, 0x0A0A, 0x7A7A]), max_size=3)
# Types the reader does not interpret, each at most once (a repeated one is malformed).
unknown_extensions = st.lists(st.tuples(st.integers(0x0100, 0xFEFF), st.binary(max_size=40)),
                              max_size=3, unique_by=lambda extension: extension[0])
valid_messages = st.builds(hello_message, st.none() | host_names, protocols, versions,
                           unknown_extensions)
record_sizes = st.lists(st.integers(1, 300), max_size=8)
valid_hellos = st.builds(frame, valid_messages, record_sizes)

# Bytes that start like TLS, so the reader gets past its first-byte check.
tls_like = st.builds(lambda rest: b"\x16" + rest, st.binary(max_size=600))
anything = st.binary(max_size=600) | tls_like


def framing_complete(data: bytes) -> bool:
    """A reference model of record framing: do whole records already carry a whole hello?"""
    handshake, pos = b"", 0
    while pos + 5 <= len(data):
        length = data[pos + 3] << 8 | data[pos + 4]
        if pos + 5 + length > len(data):
            return False
        handshake += data[pos + 5:pos + 5 + length]
        pos += 5 + length
        if len(handshake) >= 4 and len(handshake) >= 4 + int.from_bytes(handshake[1:4], "big"):
            return True
    return False


# -- properties, as plain checks the atheris entry point (fuzz/clienthello.py) shares -----


def check_total(data: bytes) -> HelloResult:
    result = read_client_hello(data)
    assert isinstance(result, HelloResult)
    assert (result.hello is not None) == (result.kind is HELLO)
    assert bool(result.reason) == (result.kind is MALFORMED)
    return result


def check_stable(data: bytes, more: bytes) -> None:
    """A verdict other than NEED_MORE does not change when more bytes follow."""
    alone = read_client_hello(data)
    if alone.kind is not NEED_MORE:
        assert read_client_hello(data + more) == alone


def check_segments(data: bytes, cuts: list[int]) -> None:
    """Fed in segments (cut at ``cuts``) or at once, the verdict is the same."""
    reader = ClientHelloReader()
    previous = 0
    for cut in sorted(c for c in cuts if c < len(data)):
        reader.feed(data[previous:cut])
        previous = cut
    assert reader.feed(data[previous:]) == read_client_hello(data)


def check_need_more_only_for_a_prefix(data: bytes) -> None:
    if read_client_hello(data).kind is NEED_MORE:
        assert not framing_complete(data)


def check_one_input(data: bytes) -> None:
    """Every property for one input: the body of the atheris entry point."""
    check_total(data)
    check_need_more_only_for_a_prefix(data)
    split = len(data) // 2
    check_stable(data[:split], data[split:])
    check_segments(data, list(range(0, len(data), 1 + (data[0] if data else 0) % 7)))


@pytest.mark.parametrize("data", REGRESSIONS)
def test_issue_13_inputs_hold_every_property(data: bytes) -> None:
    check_one_input(data)


@FAST
@given(anything)
@example(EMPTY_RECORD)
@example(EMPTY_RECORD * 1000)
def test_the_reader_is_total(data: bytes) -> None:
    check_total(data)


@FAST
@given(anything, st.binary(min_size=1, max_size=200))
@example(EMPTY_RECORD, EMPTY_RECORD * 50)
@example(b"\x16\x03\x01\x00", b"\x00" + EMPTY_RECORD * 50)
def test_a_verdict_does_not_change_when_more_bytes_follow(data: bytes, more: bytes) -> None:
    check_stable(data, more)


@FAST
@given(anything, st.lists(st.integers(0, 600), max_size=8))
@example(EMPTY_RECORD * 20, [1, 2, 3, 4, 5, 6])
def test_fed_in_segments_or_at_once_the_verdict_is_the_same(
        data: bytes, cuts: list[int]) -> None:
    check_segments(data, cuts)


@FAST
@given(anything)
@example(EMPTY_RECORD * 3)
def test_need_more_only_while_the_records_cannot_yet_hold_a_hello(data: bytes) -> None:
    check_need_more_only_for_a_prefix(data)


@BUILT
@given(valid_hellos, st.data())
def test_a_valid_hello_is_read_and_each_of_its_prefixes_needs_more(
        hello: bytes, data: st.DataObject) -> None:
    whole = read_client_hello(hello)
    assert whole.kind is HELLO, whole
    assert whole.hello is not None and whole.hello.record_bytes == len(hello)

    cut = data.draw(st.integers(0, len(hello) - 1), label="cut")
    assert read_client_hello(hello[:cut]).kind is NEED_MORE


@BUILT
@given(valid_messages, record_sizes, record_sizes)
def test_any_framing_of_one_hello_gives_the_same_hello(
        message: bytes, first: list[int], second: list[int]) -> None:
    one, other = read_client_hello(frame(message, first)), read_client_hello(frame(message, second))

    assert one.hello is not None and other.hello is not None
    assert (one.hello.sni, one.hello.alpn, one.hello.versions) == (
        other.hello.sni, other.hello.alpn, other.hello.versions)


@settings(max_examples=5, deadline=None)
@given(st.integers(1, 20_000))
@example(100_000)
def test_empty_records_are_refused_at_once_however_many_follow(count: int) -> None:
    reader = ClientHelloReader()
    started = time.perf_counter()
    result = reader.feed(EMPTY_RECORD)
    for _ in range(count):  # a client that keeps sending them, one segment each
        result = reader.feed(EMPTY_RECORD)

    assert result.kind is MALFORMED and "empty" in result.reason
    assert time.perf_counter() - started < 1.0


def test_one_byte_records_are_refused_past_the_record_cap() -> None:
    # A hello announcing 65,535 bytes, then sent one byte per record.
    payload = b"\x01\x00\xff\xff" + bytes(MAX_RECORDS)
    one_byte_records = b"".join(b"\x16\x03\x01\x00\x01" + payload[i:i + 1]
                                for i in range(len(payload)))

    result = read_client_hello(one_byte_records)

    assert result.kind is MALFORMED and str(MAX_RECORDS) in result.reason
