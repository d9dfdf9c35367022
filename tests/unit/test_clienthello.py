"""Tests for the sans-IO ClientHello reader, against hellos from real TLS stacks and crafted ones."""

from __future__ import annotations

import functools
import shutil
import socket
import ssl
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.tls.clienthello import (
    HELLO,
    MALFORMED,
    MAX_HANDSHAKE_LENGTH,
    MAX_RECORD_LENGTH,
    NEED_MORE,
    NOT_TLS,
    ClientHello,
    ClientHelloReader,
    HelloResult,
    read_client_hello,
)

# -- real peers ---------------------------------------------------------------------------


@functools.cache
def python_hello(
    server_hostname: str | None = "example.com",
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
    maximum_version: ssl.TLSVersion | None = None,
) -> bytes:
    """The first flight Python's ssl (OpenSSL) sends, read from its outgoing memory BIO."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if maximum_version is not None:
        context.maximum_version = maximum_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


MANY_PROTOCOLS = tuple(f"proto-{i:02d}" for i in range(60))
LONG_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])

# (id, hello, expected sni, expected alpn)
REAL_HELLOS = [
    ("tls13-sni-alpn", python_hello(), "example.com", ("h2", "http/1.1")),
    (
        "tls12-only",
        python_hello(maximum_version=ssl.TLSVersion.TLSv1_2),
        "example.com",
        ("h2", "http/1.1"),
    ),
    ("no-sni", python_hello(server_hostname=None), None, ("h2", "http/1.1")),
    (
        "ip-literal-sends-no-sni",
        python_hello(server_hostname="127.0.0.1"),
        None,
        ("h2", "http/1.1"),
    ),
    ("no-alpn", python_hello(alpn=()), "example.com", ()),
    (
        "idna",
        python_hello(server_hostname="bücher.example"),
        "xn--bcher-kva.example",
        ("h2", "http/1.1"),
    ),
    (
        "upper-case-sni",
        python_hello(server_hostname="WWW.Example.COM"),
        "www.example.com",
        ("h2", "http/1.1"),
    ),
    ("long-sni", python_hello(server_hostname=LONG_NAME), LONG_NAME, ("h2", "http/1.1")),
    ("many-alpn", python_hello(alpn=MANY_PROTOCOLS), "example.com", MANY_PROTOCOLS),
]
REAL_IDS = [case[0] for case in REAL_HELLOS]


@pytest.mark.parametrize(("name", "data", "sni", "alpn"), REAL_HELLOS, ids=REAL_IDS)
def test_real_hello_yields_sni_alpn_and_its_record_size(
    name: str, data: bytes, sni: str | None, alpn: tuple[str, ...]
) -> None:
    result = read_client_hello(data)
    assert result.kind is HELLO
    assert result.hello is not None
    assert result.hello.sni == sni
    assert result.hello.alpn == alpn
    assert result.hello.sslv2 is False
    assert result.hello.record_bytes == len(data)


def test_tls13_client_lists_its_supported_versions() -> None:
    hello = read_client_hello(python_hello()).hello
    assert hello is not None
    assert hello.versions == (0x0304, 0x0303)


def test_tls12_only_client_reports_legacy_version() -> None:
    hello = read_client_hello(python_hello(maximum_version=ssl.TLSVersion.TLSv1_2)).hello
    assert hello is not None
    assert hello.versions == (0x0303,)


def test_input_types_bytearray_and_memoryview_are_accepted() -> None:
    data = python_hello()
    expected = read_client_hello(data)
    assert read_client_hello(bytearray(data)) == expected
    assert read_client_hello(memoryview(data)) == expected


def test_bytes_after_the_hello_are_not_counted_in_record_bytes() -> None:
    data = python_hello()
    result = read_client_hello(data + b"\x14\x03\x03\x00\x01\x01" + b"junk")
    assert result.kind is HELLO
    assert result.hello is not None
    assert result.hello.record_bytes == len(data)


def _capture_openssl_hello(args: list[str]) -> bytes:
    """Run `openssl s_client` against a local socket that reads its first flight and hangs up."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        port = server.getsockname()[1]
        client = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        received = bytearray()
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                # Stop as soon as the reader has a verdict; a broken reader fails on the assert
                # below instead of hanging, because s_client stops sending after its hello.
                while read_client_hello(received).kind is NEED_MORE:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    received += chunk
        finally:
            client.kill()
            client.wait(timeout=10)
    return bytes(received)


openssl_cli = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")


@openssl_cli
@pytest.mark.parametrize(
    ("args", "sni", "alpn", "versions"),
    [
        (
            ["-tls1_3", "-servername", "db.example.org", "-alpn", "h2,http/1.1"],
            "db.example.org",
            ("h2", "http/1.1"),
            (0x0304,),
        ),
        (
            ["-servername", "legacy.example", "-tls1_2", "-alpn", "postgresql"],
            "legacy.example",
            ("postgresql",),
            (0x0303,),
        ),
        (["-tls1_3", "-noservername"], None, (), (0x0304,)),
    ],
    ids=["tls13", "tls12", "no-sni"],
)
def test_openssl_s_client_hello_over_a_real_socket(
    args: list[str], sni: str | None, alpn: tuple[str, ...], versions: tuple[int, ...]
) -> None:
    data = _capture_openssl_hello(args)
    result = read_client_hello(data)
    assert result.kind is HELLO, result.reason
    assert result.hello == ClientHello(
        sni=sni, alpn=alpn, versions=versions, sslv2=False, record_bytes=len(data)
    )


# -- split across segments and records ----------------------------------------------------


@pytest.mark.parametrize(("name", "data", "sni", "alpn"), REAL_HELLOS, ids=REAL_IDS)
def test_every_proper_prefix_of_a_real_hello_needs_more(
    name: str, data: bytes, sni: str | None, alpn: tuple[str, ...]
) -> None:
    # The reader is stateless, so every TCP split point is a prefix; feeding byte by byte
    # visits them all.
    complete = read_client_hello(data)
    for cut in range(len(data)):
        assert read_client_hello(data[:cut]).kind is NEED_MORE, cut
    assert read_client_hello(bytearray(data)) == complete


def handshake_of(record_stream: bytes) -> bytes:
    """The handshake bytes carried by a stream of handshake records."""
    out = bytearray()
    pos = 0
    while pos < len(record_stream):
        length = int.from_bytes(record_stream[pos + 3 : pos + 5], "big")
        out += record_stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return bytes(out)


def reframe(handshake: bytes, sizes: list[int], version: bytes = b"\x03\x01") -> bytes:
    """Carry ``handshake`` in records whose payload sizes cycle through ``sizes``."""
    out = bytearray()
    pos = 0
    index = 0
    while pos < len(handshake):
        size = sizes[index % len(sizes)]
        fragment = handshake[pos : pos + size]
        out += b"\x16" + version + len(fragment).to_bytes(2, "big") + fragment
        pos += size
        index += 1
    return bytes(out)


@pytest.mark.parametrize("sizes", [[1], [7], [100], [1, 7, 100], [3, 4096]])
def test_hello_fragmented_over_several_records_still_yields_sni(sizes: list[int]) -> None:
    data = reframe(handshake_of(python_hello()), sizes)
    result = read_client_hello(data)
    assert result.kind is HELLO, result.reason
    assert result.hello is not None
    assert result.hello.sni == "example.com"
    assert result.hello.alpn == ("h2", "http/1.1")
    assert result.hello.record_bytes == len(data)


def test_record_carrying_more_than_the_hello_is_read_whole() -> None:
    # Records are the unit Go's TLS stack reads, so the verdict waits for the record's end.
    message = handshake_of(python_hello())
    data = record(message + b"\x0f\x00\x00\x00")
    assert read_client_hello(data[:-1]).kind is NEED_MORE
    result = read_client_hello(data)
    assert result.hello is not None
    assert result.hello.record_bytes == len(data)


def test_fragmented_hello_needs_more_at_every_prefix() -> None:
    data = reframe(handshake_of(python_hello()), [1, 7, 100])
    for cut in range(len(data)):
        assert read_client_hello(data[:cut]).kind is NEED_MORE, cut
    assert read_client_hello(data).kind is HELLO


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 600), min_size=1, max_size=8), data=st.data())
def test_any_record_framing_gives_the_same_hello_and_prefixes_need_more(
    sizes: list[int], data: st.DataObject
) -> None:
    framed = reframe(handshake_of(python_hello(alpn=MANY_PROTOCOLS)), sizes)
    cut = data.draw(st.integers(0, len(framed) - 1))
    assert read_client_hello(framed[:cut]).kind is NEED_MORE
    result = read_client_hello(framed)
    assert result.hello is not None
    assert result.hello.sni == "example.com"
    assert result.hello.alpn == MANY_PROTOCOLS
    assert result.hello.record_bytes == len(framed)


# -- crafted hellos -----------------------------------------------------------------------


def extension(kind: int, body: bytes) -> bytes:
    return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def sni_extension(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + len(n).to_bytes(2, "big") + n for n in names)
    return extension(0, len(entries).to_bytes(2, "big") + entries)


def alpn_extension(*protocols: bytes) -> bytes:
    entries = b"".join(bytes([len(p)]) + p for p in protocols)
    return extension(16, len(entries).to_bytes(2, "big") + entries)


def versions_extension(*versions: int) -> bytes:
    entries = b"".join(v.to_bytes(2, "big") for v in versions)
    return extension(43, bytes([len(entries)]) + entries)


def hello_body(
    *extensions: bytes,
    session_id: bytes = b"",
    suites: bytes = b"\x13\x01\x00\xff",
    compression: bytes = b"\x00",
    with_extensions: bool = True,
    trailer: bytes = b"",
) -> bytes:
    body = (
        b"\x03\x03"
        + bytes(32)
        + bytes([len(session_id)])
        + session_id
        + len(suites).to_bytes(2, "big")
        + suites
        + bytes([len(compression)])
        + compression
    )
    if with_extensions:
        block = b"".join(extensions)
        body += len(block).to_bytes(2, "big") + block
    return body + trailer


def handshake(body: bytes, message_type: int = 1) -> bytes:
    return bytes([message_type]) + len(body).to_bytes(3, "big") + body


def record(payload: bytes, content_type: int = 0x16, version: bytes = b"\x03\x01") -> bytes:
    return bytes([content_type]) + version + len(payload).to_bytes(2, "big") + payload


def crafted(*extensions: bytes) -> HelloResult:
    return parse_body(hello_body(*extensions))


def parse_body(body: bytes) -> HelloResult:
    """Read a ClientHello body framed as one handshake message in one record."""
    return read_client_hello(record(handshake(body)))


def test_sni_is_trimmed_and_lower_cased_like_traefik() -> None:
    result = crafted(sni_extension(b" \tWWW.Example.COM\r\n"))
    assert result.hello is not None
    assert result.hello.sni == "www.example.com"


def test_sni_keeps_its_trailing_dot() -> None:
    result = crafted(sni_extension(b"example.com."))
    assert result.hello is not None
    assert result.hello.sni == "example.com."


def test_whitespace_only_sni_counts_as_no_sni() -> None:
    result = crafted(sni_extension(b"   "))
    assert result.kind is HELLO
    assert result.hello is not None
    assert result.hello.sni is None


def test_sni_trimming_uses_go_whitespace_not_python_whitespace() -> None:
    # U+001F is whitespace to str.strip() but not to Go's strings.TrimSpace.
    result = crafted(sni_extension(b"\x1fexample.com"))
    assert result.hello is not None
    assert result.hello.sni == "\x1fexample.com"


def test_server_name_entries_of_other_types_are_skipped() -> None:
    entries = b"\x05\x00\x03abc" + b"\x00\x00\x0bexample.com"
    result = crafted(extension(0, len(entries).to_bytes(2, "big") + entries))
    assert result.hello is not None
    assert result.hello.sni == "example.com"


def test_hello_without_extensions_has_no_sni_and_legacy_version() -> None:
    data = record(handshake(hello_body(with_extensions=False)))
    result = read_client_hello(data)
    assert result.kind is HELLO
    assert result.hello == ClientHello(None, (), (0x0303,), False, len(data))


def test_unknown_extensions_are_tolerated() -> None:
    result = crafted(extension(0xFAFA, b""), extension(0x1234, b"\xff" * 40), sni_extension(b"a.b"))
    assert result.hello is not None
    assert result.hello.sni == "a.b"


def test_supported_versions_keep_order_and_grease_values() -> None:
    result = crafted(versions_extension(0x7A7A, 0x0304, 0x0303))
    assert result.hello is not None
    assert result.hello.versions == (0x7A7A, 0x0304, 0x0303)


def test_alpn_bytes_that_are_not_utf8_survive_via_surrogateescape() -> None:
    result = crafted(alpn_extension(b"h2", b"\xff\xfeproto", "é".encode()))
    assert result.hello is not None
    assert result.hello.alpn == ("h2", "\udcff\udcfeproto", "é")
    assert result.hello.alpn[1].encode("utf-8", "surrogateescape") == b"\xff\xfeproto"


def test_record_at_go_maximum_length_is_accepted() -> None:
    # Pad the hello so that its single record carries exactly MAX_RECORD_LENGTH bytes.
    padding_length = MAX_RECORD_LENGTH - len(handshake(hello_body(extension(21, b""))))
    data = record(handshake(hello_body(extension(21, bytes(padding_length)))))
    assert len(data) == 5 + MAX_RECORD_LENGTH
    assert read_client_hello(data).kind is HELLO


def test_hello_of_maximum_handshake_length_over_several_records_is_accepted() -> None:
    # Two padding extensions, each within the 65535-byte extension limit, fill the message to
    # exactly 64 KiB, which then needs five records.
    name = sni_extension(b"big.example")
    overhead = len(hello_body(name, extension(21, b""), extension(0xFFCE, b"")))
    first = 40000
    second = MAX_HANDSHAKE_LENGTH - overhead - first
    message = handshake(
        hello_body(name, extension(21, bytes(first)), extension(0xFFCE, bytes(second)))
    )
    assert len(message) == 4 + MAX_HANDSHAKE_LENGTH
    result = read_client_hello(reframe(message, [16384]))
    assert result.kind is HELLO, result.reason
    assert result.hello is not None
    assert result.hello.sni == "big.example"


# -- classification and malformed input ---------------------------------------------------


def test_empty_input_needs_more() -> None:
    assert read_client_hello(b"").kind is NEED_MORE


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"\x00",
        b"SSH-2.0-OpenSSH\r\n",
        b"\x15\x03\x03\x00\x02\x02\x28",
        b"\x17",
    ],
)
def test_non_handshake_first_byte_is_not_tls(data: bytes) -> None:
    assert read_client_hello(data).kind is NOT_TLS


def test_sslv2_first_byte_is_tls_without_sni_or_alpn() -> None:
    result = read_client_hello(b"\x80")
    assert result.kind is HELLO
    assert result.hello == ClientHello(sni=None, alpn=(), versions=(), sslv2=True, record_bytes=0)


@pytest.mark.parametrize(
    "data", [b"\x16", b"\x16\x03", b"\x16\x03\x01\x02", b"\x16\x03\x01\x02\x00\x01"]
)
def test_partial_record_header_or_body_needs_more(data: bytes) -> None:
    assert read_client_hello(data).kind is NEED_MORE


def malformed_reason(data: bytes) -> str:
    result = read_client_hello(data)
    assert result.kind is MALFORMED
    assert result.hello is None
    return result.reason


def test_oversized_record_is_malformed_from_its_header_alone() -> None:
    assert malformed_reason(bytes.fromhex("160303ffff")) == "TLS record length 65535 exceeds 18432"


def test_record_one_byte_over_go_limit_is_malformed() -> None:
    assert "18433" in malformed_reason(b"\x16\x03\x01" + (MAX_RECORD_LENGTH + 1).to_bytes(2, "big"))


def test_empty_record_is_malformed() -> None:
    assert "empty" in malformed_reason(bytes.fromhex("1603010000"))


def test_record_version_major_other_than_3_is_malformed_after_two_bytes() -> None:
    assert "major" in malformed_reason(b"\x16\x02")


def test_wrong_handshake_type_is_malformed_as_soon_as_it_arrives() -> None:
    assert "type 2" in malformed_reason(b"\x16\x03\x03\x00\x40\x02")


def test_handshake_length_over_64k_is_malformed_from_its_header() -> None:
    assert "65537" in malformed_reason(b"\x16\x03\x01\x00\x04\x01\x01\x00\x01")


def test_non_handshake_record_before_the_hello_completes_is_malformed() -> None:
    message = handshake_of(python_hello())
    data = record(message[:50]) + record(b"\x01", content_type=0x15) + record(message[50:])
    assert "type 21" in malformed_reason(data)


def test_second_record_with_bad_version_is_malformed() -> None:
    message = handshake_of(python_hello())
    assert "major" in malformed_reason(record(message[:50]) + b"\x16\x04")


def test_truncated_extensions_length_is_malformed() -> None:
    body = hello_body(sni_extension(b"example.com"))
    # Claim two more extension bytes than the message carries.
    extensions_at = len(body) - len(sni_extension(b"example.com")) - 2
    length = int.from_bytes(body[extensions_at : extensions_at + 2], "big") + 2
    broken = body[:extensions_at] + length.to_bytes(2, "big") + body[extensions_at + 2 :]
    assert "extensions" in malformed_reason(record(handshake(broken)))


def test_extension_overrunning_the_block_is_malformed() -> None:
    block = b"\x00\x00\x00\x10abc"
    body = hello_body(with_extensions=False) + len(block).to_bytes(2, "big") + block
    assert "overruns" in malformed_reason(record(handshake(body)))


def test_garbage_after_the_extensions_block_is_malformed() -> None:
    body = hello_body(sni_extension(b"a.example"), trailer=b"\x00")
    assert "after the extensions" in malformed_reason(record(handshake(body)))


def test_truncated_extension_header_is_malformed() -> None:
    block = b"\x00\x00\x00"
    body = hello_body(with_extensions=False) + len(block).to_bytes(2, "big") + block
    assert "extension header" in malformed_reason(record(handshake(body)))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (hello_body(session_id=bytes(33)), "session id"),
        (hello_body(suites=b""), "cipher suites"),
        (hello_body(suites=b"\x13\x01\x00"), "cipher suites"),
        (hello_body(compression=b""), "compression"),
    ],
    ids=["session-id-too-long", "no-cipher-suites", "odd-cipher-suites", "no-compression"],
)
def test_invalid_fixed_fields_are_malformed(body: bytes, expected: str) -> None:
    assert expected in malformed_reason(record(handshake(body)))


def test_body_shorter_than_its_fixed_fields_is_malformed() -> None:
    assert "truncated" in malformed_reason(record(handshake(b"\x03\x03" + bytes(10))))


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        ((extension(0, b"\x00\x00"),), "empty server name list"),
        ((sni_extension(b""),), "empty server name"),
        ((sni_extension(b"a.example", b"b.example"),), "more than one host_name"),
        ((extension(0, b"\x00\x05\x00\x00\x02ab\x00"),), "trailing bytes in the server_name"),
        ((extension(0, b"\x00\x09\x00\x00\x02ab"),), "server name list"),
        ((extension(16, b"\x00\x00"),), "empty ALPN protocol list"),
        ((extension(16, b"\x00\x03\x02h2\x00"),), "trailing bytes in the ALPN"),
        ((alpn_extension(b"h2", b""),), "empty ALPN protocol name"),
        ((extension(16, b"\x00\x03\x05h2"),), "ALPN protocol"),
        ((extension(43, b"\x00"),), "supported versions"),
        ((extension(43, b"\x03\x03\x04\x03"),), "supported versions"),
        ((sni_extension(b"a.example"), sni_extension(b"a.example")), "appears twice"),
        ((extension(0xFAFA, b""), extension(0xFAFA, b"")), "appears twice"),
    ],
    ids=[
        "sni-empty-list",
        "sni-empty-name",
        "sni-two-host-names",
        "sni-trailing-bytes",
        "sni-list-overrun",
        "alpn-empty-list",
        "alpn-trailing-bytes",
        "alpn-empty-name",
        "alpn-name-overrun",
        "versions-empty",
        "versions-odd",
        "duplicate-sni",
        "duplicate-unknown",
    ],
)
def test_invalid_extensions_are_malformed(extensions: tuple[bytes, ...], expected: str) -> None:
    result = crafted(*extensions)
    assert result.kind is MALFORMED
    assert expected in result.reason


# -- properties ---------------------------------------------------------------------------


def assert_well_formed(result: HelloResult) -> None:
    assert (result.hello is not None) == (result.kind is HELLO)
    assert bool(result.reason) == (result.kind is MALFORMED)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert_well_formed(read_client_hello(data))


@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=400), message_type=st.sampled_from([1, 1, 1, 2]))
def test_arbitrary_handshake_payloads_never_raise(payload: bytes, message_type: int) -> None:
    # A well-formed record and handshake header around random bytes gets past the framing.
    assert_well_formed(read_client_hello(record(handshake(payload, message_type))))


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_mutated_real_hello_never_raises(data: st.DataObject) -> None:
    hello = bytearray(
        reframe(handshake_of(python_hello()), [data.draw(st.sampled_from([1, 60, 600]))])
    )
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(hello) - 1))
        hello[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del hello[data.draw(st.integers(0, len(hello))) :]
    assert_well_formed(read_client_hello(hello))


@settings(max_examples=300, deadline=None)
@given(
    extensions=st.lists(
        st.tuples(st.sampled_from([0, 16, 43, 21, 0xFAFA]), st.binary(max_size=40)), max_size=6
    ),
    delta=st.integers(-3, 3),
)
def test_crafted_extensions_with_wrong_lengths_never_raise(
    extensions: list[tuple[int, bytes]], delta: int
) -> None:
    block = b"".join(extension(kind, body) for kind, body in extensions)
    body = hello_body(with_extensions=False) + max(0, len(block) + delta).to_bytes(2, "big") + block
    assert_well_formed(read_client_hello(record(handshake(body))))


def _verdict(result: HelloResult) -> tuple[object, ...]:
    return result.kind, result.hello, result.reason


def _fed_in_two(data: bytes, cut: int) -> HelloResult:
    reader = ClientHelloReader()
    first = reader.feed(data[:cut])
    return first if reader.done else reader.feed(data[cut:])


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_a_hello_read_at_once_gets_the_verdict_it_gets_in_pieces(data: st.DataObject) -> None:
    # A first read holding the whole first record takes a shortcut past the record-by-record
    # reader; whatever the bytes, its verdict (reason included) must be the reader's.
    hello = bytearray(
        reframe(handshake_of(python_hello()), [data.draw(st.sampled_from([60, 600, 20000]))])
    )
    for _ in range(data.draw(st.integers(0, 4))):
        position = data.draw(st.integers(0, len(hello) - 1))
        hello[position] = data.draw(st.integers(0, 255))
    hello += data.draw(st.binary(max_size=20))  # what the client sent after its hello
    whole = bytes(hello)
    cut = data.draw(st.integers(1, len(whole) - 1))
    assert _verdict(ClientHelloReader().feed(whole)) == _verdict(_fed_in_two(whole, cut))
    assert _verdict(ClientHelloReader().feed(memoryview(whole))) == _verdict(
        ClientHelloReader().feed(whole))


@pytest.mark.parametrize("spill", [1, 2, 3, 4, 5])
def test_a_hello_whose_last_bytes_are_in_a_second_record_is_reassembled(spill: int) -> None:
    message = handshake_of(python_hello())
    data = reframe(message, [len(message) - spill, spill])
    result = ClientHelloReader().feed(data)
    assert result.kind is HELLO, result.reason
    assert result.hello is not None and result.hello.sni == "example.com"
    assert result.hello.record_bytes == len(data)
