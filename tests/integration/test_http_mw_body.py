"""Body-shaping HTTP middlewares over real sockets: compress, errors, buffering,
encodedCharacters, and grpcWeb's passing of what is not gRPC-Web."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
import urllib.request
import zlib
from collections.abc import Iterator
from typing import Any

import brotli
import pytest
import zstandard

from tests.bodykit import Backend, body_backend, noise, text
from tests.harness import LoopThread, ensure_command
from tests.mwkit import raw_request, serve

DECODERS = {
    "gzip": lambda data: zlib.decompress(data, 31),
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}

DYNAMIC = """
http:
  routers:
    compressed:
      rule: "PathPrefix(`/body`)"
      middlewares: [compress]
      service: backend
    small-min:
      rule: "PathPrefix(`/min`)"
      middlewares: [compress-min, to-body]
      service: backend
    excluded:
      rule: "PathPrefix(`/excluded`)"
      middlewares: [compress-except, to-body]
      service: backend
    included:
      rule: "PathPrefix(`/included`)"
      middlewares: [compress-only, to-body]
      service: backend
    brotli-first:
      rule: "PathPrefix(`/brfirst`)"
      middlewares: [compress-br, to-body]
      service: backend
    errors:
      rule: "PathPrefix(`/err`)"
      middlewares: [pages, to-body]
      service: backend
    errors-down:
      rule: "PathPrefix(`/down`)"
      middlewares: [pages]
      service: nowhere
    errors-chosen:
      rule: "PathPrefix(`/chosen`)"
      middlewares: [pages-chosen, to-body]
      service: backend
    buffered:
      rule: "PathPrefix(`/buffered`)"
      middlewares: [buffer, to-echo]
      service: backend
    buffered-response:
      rule: "PathPrefix(`/bigresponse`)"
      middlewares: [buffer, to-body]
      service: backend
    buffered-big:
      rule: "PathPrefix(`/spill`)"
      middlewares: [buffer-small-memory, to-echo]
      service: backend
    buffered-big-response:
      rule: "PathPrefix(`/bigspill`)"
      middlewares: [buffer-small-memory, to-body]
      service: backend
    buffered-retry:
      rule: "PathPrefix(`/retry`)"
      middlewares: [buffer-retry, to-body]
      service: backend
    encoded:
      rule: "PathPrefix(`/enc`)"
      middlewares: [encoded]
      service: backend
    encoded-slash-ok:
      rule: "PathPrefix(`/slashok`)"
      middlewares: [encoded-slash]
      service: backend
    grpc:
      rule: "PathPrefix(`/grpc`)"
      middlewares: [grpc-web]
      service: backend
    bad-compress:
      rule: "PathPrefix(`/badc`)"
      middlewares: [compress-both]
      service: backend
  middlewares:
    compress: {compress: {}}
    compress-min: {compress: {minResponseBodyBytes: 100}}
    compress-except: {compress: {excludedContentTypes: ["text/csv"]}}
    compress-only: {compress: {includedContentTypes: ["application/json"]}}
    compress-br: {compress: {encodings: [br, gzip], defaultEncoding: br}}
    compress-both:
      compress: {excludedContentTypes: ["a/b"], includedContentTypes: ["c/d"]}
    to-body: {replacePathRegex: {regex: "^/[a-z]+", replacement: "/body"}}
    to-echo: {replacePathRegex: {regex: "^/[a-z]+", replacement: "/echo"}}
    pages:
      errors:
        status: ["500-599", "404"]
        service: pages
        query: "/page/{status}/{originalStatus}?from={url}"
    pages-chosen:
      errors:
        status: ["418"]
        statusRewrites: {"418": 410}
        service: pages@file
        query: "page"
        errorRequestHeaders: [X-Wanted]
    buffer: {buffering: {maxRequestBodyBytes: 1000, maxResponseBodyBytes: 5000,
                         memRequestBodyBytes: 100, memResponseBodyBytes: 100}}
    buffer-small-memory: {buffering: {memRequestBodyBytes: 1000, memResponseBodyBytes: 1000}}
    buffer-retry:
      buffering: {retryExpression: "IsNetworkError() || ResponseCode() == 503 && Attempts() < 3"}
    encoded: {encodedCharacters: {}}
    encoded-slash: {encodedCharacters: {allowEncodedSlash: true}}
    grpc-web: {grpcWeb: {allowOrigins: ["*"]}}
  services:
    backend:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:%(backend)d"}]
    pages:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:%(backend)d"}]
    nowhere:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:%(closed)d"}]
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with body_backend() as running:
        yield running


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[dict[str, int]]:
    """One Switchyard for the whole module (the routers do not share state between tests)."""
    loop = LoopThread()
    dynamic = DYNAMIC % {"backend": backend.port, "closed": _closed_port()}
    try:
        with serve(loop, tmp_path_factory.mktemp("body"), dynamic,
                   api={"insecure": True}) as running:
            yield running
    finally:
        loop.stop()


def get(port: int, target: str, headers: dict[str, str] | None = None, method: str = "GET",
        body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a new connection; no Accept-Encoding unless ``headers`` has one."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True,
                        skip_host="Host" in (headers or {}))
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        conn.close()


# -- compress -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_curl_compressed_decodes_each_encoding_to_the_backend_body(
        ports: dict[str, int], encoding: str) -> None:
    curl = ensure_command("curl", "curl")
    out = subprocess.run(
        [curl, "-s", "--compressed", "-H", f"Accept-Encoding: {encoding}", "-D", "-",
         f"http://127.0.0.1:{ports['web']}/body?size=50000"],
        capture_output=True, check=True, timeout=20).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert f"content-encoding: {encoding}".encode() in head.lower()
    assert b"vary: accept-encoding" in head.lower()
    assert body == text(50000)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compressed_body_decodes_and_loses_its_content_length(
        ports: dict[str, int], encoding: str) -> None:
    status, headers, body = get(ports["web"], "/body?size=100000",
                                {"Accept-Encoding": encoding})
    assert status == 200
    assert headers["Content-Encoding"] == encoding
    assert DECODERS[encoding](body) == text(100000)
    assert len(body) < 10000
    _, headers, body = get(ports["web"], "/body?size=100000&noise=1",
                           {"Accept-Encoding": encoding})
    assert headers["Content-Encoding"] == encoding
    assert headers["Content-Length"] is None  # more than Go's 2048-byte buffer: chunked
    assert DECODERS[encoding](body) == noise(100000)


def test_short_compressed_output_gets_a_content_length(ports: dict[str, int]) -> None:
    _status, headers, body = get(ports["web"], "/body?size=3000", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Length"] == str(len(body))
    assert zlib.decompress(body, 31) == text(3000)


def test_q_values_pick_the_encoding_and_ties_follow_the_encodings_order(
        ports: dict[str, int]) -> None:
    cases = {
        "gzip, br, zstd": "gzip",
        "zstd, br": "br",
        "br;q=0.5, zstd;q=0.9": "zstd",
        "gzip;q=0, br;q=0.1": "br",
        "identity": None,
        "compress": None,
        "": None,
    }
    for accept, expected in cases.items():
        _, headers, body = get(ports["web"], "/body?size=5000", {"Accept-Encoding": accept})
        assert headers["Content-Encoding"] == expected, accept
        if expected:
            assert DECODERS[expected](body) == text(5000)
        else:
            assert body == text(5000)


def test_vary_is_added_when_an_encoding_was_picked_even_if_not_compressed(
        ports: dict[str, int]) -> None:
    _, headers, _ = get(ports["web"], "/body?size=10", {"Accept-Encoding": "br"})
    assert headers["Content-Encoding"] is None
    assert headers.get_all("Vary") == ["Accept-Encoding"]
    _, headers, _ = get(ports["web"], "/body?size=10", {"Accept-Encoding": "identity"})
    assert headers["Vary"] is None
    _, headers, _ = get(ports["web"], "/body?size=5000&h=Vary:Origin",
                        {"Accept-Encoding": "gzip"})
    assert headers.get_all("Vary") == ["Accept-Encoding", "Origin"]


def test_wildcard_means_the_first_encoding_and_gzip_then_declines_it(
        ports: dict[str, int]) -> None:
    # Traefik picks gzip for "*", and its gzip library only compresses for an explicit gzip.
    _, headers, _ = get(ports["web"], "/body?size=5000", {"Accept-Encoding": "*"})
    assert headers["Content-Encoding"] is None
    assert headers["Vary"] == "Accept-Encoding"
    _, headers, body = get(ports["web"], "/brfirst?size=5000", {"Accept-Encoding": "*"})
    assert headers["Content-Encoding"] == "br"
    assert brotli.decompress(body) == text(5000)


def test_default_encoding_applies_without_accept_encoding(ports: dict[str, int]) -> None:
    _, headers, body = get(ports["web"], "/brfirst?size=5000")
    assert headers["Content-Encoding"] == "br" and brotli.decompress(body) == text(5000)
    _, headers, _ = get(ports["web"], "/body?size=5000")
    assert headers["Content-Encoding"] is None and headers["Vary"] is None


def test_min_response_body_bytes_decides_by_declared_length(ports: dict[str, int]) -> None:
    _, headers, _ = get(ports["web"], "/min?size=99", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] is None
    assert headers["Content-Length"] == "99"
    _, headers, _body = get(ports["web"], "/min?size=100", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    _, headers, _ = get(ports["web"], "/body?size=1023", {"Accept-Encoding": "zstd"})
    assert headers["Content-Encoding"] is None
    _, headers, _ = get(ports["web"], "/body?size=1024", {"Accept-Encoding": "zstd"})
    assert headers["Content-Encoding"] == "zstd"


def test_a_chunked_response_is_compressed_whatever_its_size(ports: dict[str, int]) -> None:
    # Traefik's proxy flushes a response of unknown length after each write, which starts
    # the compression before minResponseBodyBytes is reached.
    _, headers, body = get(ports["web"], "/body?size=10&chunks=1", {"Accept-Encoding": "br"})
    assert headers["Content-Encoding"] == "br"
    assert brotli.decompress(body) == text(10)


def test_excluded_and_included_content_types(ports: dict[str, int]) -> None:
    _, headers, _ = get(ports["web"], "/excluded?size=5000&type=text/csv;charset=utf-8",
                        {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] is None
    _, headers, _ = get(ports["web"], "/excluded?size=5000&type=text/html",
                        {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    _, headers, _ = get(ports["web"], "/included?size=5000&type=text/html",
                        {"Accept-Encoding": "zstd"})
    assert headers["Content-Encoding"] is None
    _, headers, _ = get(ports["web"], "/included?size=5000&type=application/json",
                        {"Accept-Encoding": "zstd"})
    assert headers["Content-Encoding"] == "zstd"


def test_grpc_requests_and_encoded_or_bodyless_responses_pass_untouched(
        ports: dict[str, int]) -> None:
    _, headers, _ = get(ports["web"], "/body?size=5000",
                        {"Accept-Encoding": "gzip", "Content-Type": "application/grpc"})
    assert headers["Content-Encoding"] is None and headers["Vary"] is None
    _, headers, body = get(ports["web"], "/body?size=5000&h=Content-Encoding:custom",
                           {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "custom" and body == text(5000)
    status, headers, body = get(ports["web"], "/body?size=5000&status=204",
                                {"Accept-Encoding": "gzip"})
    assert status == 204 and headers["Content-Encoding"] is None and body == b""
    status, headers, body = get(ports["web"], "/body?size=5000", {"Accept-Encoding": "gzip"},
                                method="HEAD")
    assert headers["Content-Encoding"] is None and headers["Vary"] is None
    assert headers["Content-Length"] == "5000"


def test_gzip_leaves_ranges_alone_but_brotli_compresses_them(ports: dict[str, int]) -> None:
    target = "/body?size=5000&status=206&h=Content-Range:bytes%200-4999/9000"
    _, headers, _ = get(ports["web"], target, {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] is None
    _, headers, _ = get(ports["web"], target, {"Accept-Encoding": "br"})
    assert headers["Content-Encoding"] == "br"


def test_streamed_response_is_compressed_chunk_by_chunk(ports: dict[str, int]) -> None:
    """The first compressed chunk decodes long before the backend has finished."""
    conn = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=10)
    began = time.monotonic()
    conn.request("GET", "/body?size=2000&chunks=6&delay=0.3&type=text/event-stream",
                 headers={"Accept-Encoding": "gzip"})
    answer = conn.getresponse()
    assert answer.headers["Content-Encoding"] == "gzip"
    decoder = zlib.decompressobj(31)
    first = decoder.decompress(answer.read1(65536))
    first_at = time.monotonic() - began
    rest = answer.read()
    total = time.monotonic() - began
    conn.close()
    assert first and text(2000).startswith(first[:100])
    assert first_at < 1.0 < total
    assert first + decoder.decompress(rest) == text(2000) * 6


def test_large_stream_is_never_held_whole(ports: dict[str, int]) -> None:
    """64 MiB through gzip: the client reads it compressed while it streams (a buffering
    proxy would answer only after the whole body, and hold it)."""
    conn = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=30)
    conn.request("GET", "/body?size=262144&chunks=256", headers={"Accept-Encoding": "gzip"})
    answer = conn.getresponse()
    decoder = zlib.decompressobj(31)
    size = 0
    while chunk := answer.read1(65536):
        size += len(decoder.decompress(chunk))
    conn.close()
    assert size == 262144 * 256


def test_bad_compress_options_disable_the_router_with_a_message(ports: dict[str, int]) -> None:
    status, _, _ = get(ports["web"], "/badc?size=10")
    assert status == 404
    with urllib.request.urlopen(
            f"http://127.0.0.1:{ports['api']}/api/http/middlewares/compress-both@file") as answer:
        data = json.load(answer)
    assert "mutually exclusive" in " ".join(data["error"])


# -- errors -------------------------------------------------------------------------------------


def test_error_status_is_served_from_the_error_page_service(ports: dict[str, int]) -> None:
    status, headers, body = get(ports["web"], "/err/x?size=10&status=503",
                                {"Host": "site.test", "X-Custom": "kept"})
    assert status == 503
    assert headers["X-Served-By"] == "page"
    page = json.loads(body)
    assert page["method"] == "GET"
    assert page["target"] == ("/page/503/503?from=http%3A%2F%2Fsite.test%2Fbody%2Fx%3Fsize%3D10"
                              "%26status%3D503")
    fields = {name.lower(): value for name, value in page["headers"]}
    assert fields["host"] == "site.test"
    assert fields["x-custom"] == "kept"


def test_statuses_outside_the_ranges_pass_with_their_body(ports: dict[str, int]) -> None:
    status, headers, body = get(ports["web"], "/err/x?size=10&status=418")
    assert status == 418 and body == text(10) and headers["X-Served-By"] is None


def test_status_rewrite_and_chosen_headers(ports: dict[str, int]) -> None:
    status, _headers, body = get(ports["web"], "/chosen?size=10&status=418",
                                {"X-Wanted": "yes", "X-Other": "no"})
    assert status == 410
    page = json.loads(body)
    assert page["target"] == "/page"
    names = {name.lower() for name, _ in page["headers"]}
    assert "x-wanted" in names and "x-other" not in names and "host" in names


def test_unreachable_service_gets_the_error_page_with_502(ports: dict[str, int]) -> None:
    status, _headers, body = get(ports["web"], "/down")
    assert status == 502
    assert json.loads(body)["target"].startswith("/page/502/502?")


def test_error_page_keeps_the_client_connection_alive(ports: dict[str, int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=10)
    for _ in range(3):
        conn.request("GET", "/err/x?size=5000&status=500")
        answer = conn.getresponse()
        assert answer.status == 500
        assert json.loads(answer.read())["target"].startswith("/page/500/500")
    conn.close()


# -- buffering ----------------------------------------------------------------------------------


def test_request_body_over_the_limit_is_refused_with_413(ports: dict[str, int]) -> None:
    status, _headers, body = get(ports["web"], "/buffered", method="POST", body=b"x" * 1001)
    assert (status, body) == (413, b"Request Entity Too Large")
    status, _, body = get(ports["web"], "/buffered", method="POST", body=b"x" * 1000)
    assert status == 200 and json.loads(body)["body_length"] == 1000


def test_chunked_request_over_the_limit_is_refused_while_it_streams(
        ports: dict[str, int]) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(5)) + b"0\r\n\r\n"
    answer = raw_request(ports["web"], b"POST /buffered HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_chunked_request_is_forwarded_with_its_length(ports: dict[str, int]) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(3)) + b"0\r\n\r\n"
    answer = raw_request(ports["web"], b"POST /buffered HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    echoed: dict[str, Any] = json.loads(body)
    fields = {name.lower(): value for name, value in echoed["headers"]}
    assert fields["content-length"] == "900" and "transfer-encoding" not in fields
    assert echoed["body_length"] == 900


def test_response_over_the_limit_becomes_500(ports: dict[str, int]) -> None:
    status, _, body = get(ports["web"], "/bigresponse?size=5001")
    assert (status, body) == (500, b"Internal Server Error")
    status, headers, body = get(ports["web"], "/bigresponse?size=5000")
    assert status == 200 and body == text(5000) and headers["Content-Length"] == "5000"


def test_bodies_past_the_memory_limit_spill_to_disk_and_arrive_whole(
        ports: dict[str, int]) -> None:
    status, _, body = get(ports["web"], "/spill", method="POST", body=b"s" * 3_000_000)
    assert status == 200
    echoed = json.loads(body)
    assert echoed["body_length"] == 3_000_000
    status, headers, body = get(ports["web"], "/bigspill?size=3000000&noise=1")
    assert status == 200 and body == noise(3_000_000)
    assert headers["Content-Length"] == "3000000"


def test_retry_expression_sends_the_request_again(ports: dict[str, int],
                                                  backend: Backend) -> None:
    before = len(backend.seen)
    status, _, _ = get(ports["web"], "/retry?size=10&status=503")
    assert status == 503
    assert len(backend.seen) - before == 3  # Attempts() < 3 retries after attempts 1 and 2


# -- encodedCharacters, grpcWeb -----------------------------------------------------------------


def test_encoded_characters_are_refused_unless_allowed(ports: dict[str, int]) -> None:
    for path in ("/enc/a%2Fb", "/enc/a%2fb", "/enc/%5C", "/enc/%00", "/enc/%3b", "/enc/%25",
                 "/enc/%3F", "/enc/%23"):
        status, _, body = get(ports["web"], path + "?size=1")
        assert (status, body) == (400, b""), path
    status, _, _ = get(ports["web"], "/enc/%41b?size=1")
    assert status == 200
    status, _, _ = get(ports["web"], "/slashok/a%2Fb?size=1")
    assert status == 200
    status, _, _ = get(ports["web"], "/slashok/a%5Cb?size=1")
    assert status == 400


def test_grpc_web_builds_and_lets_a_request_that_is_not_grpc_web_pass(
        ports: dict[str, int]) -> None:
    status, _, _ = get(ports["web"], "/grpc")
    assert status == 200  # gRPC-Web itself: tests/integration/test_http_mw_grpcweb.py
    with urllib.request.urlopen(
            f"http://127.0.0.1:{ports['api']}/api/http/middlewares/grpc-web@file") as answer:
        data = json.load(answer)
    assert data["status"] == "enabled" and not data.get("error")
