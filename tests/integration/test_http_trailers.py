"""Response trailers through the proxy: after the last chunk on HTTP/1.1, a trailing HEADERS
frame on HTTP/2, as Traefik (Go's server) sends them."""

from __future__ import annotations

from pathlib import Path

from tests.grpckit import h2_request, raw_backend
from tests.harness import LoopThread
from tests.mwkit import raw_request, serve

CHUNKED_WITH_TRAILERS = (b"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nX-Sum: 42\r\nx-other: 7\r\n\r\n")


def _dynamic(url: str) -> str:
    return f"""
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: s}}
  services:
    s: {{loadBalancer: {{servers: [{{url: "{url}"}}]}}}}
"""


def test_http1_client_gets_backend_trailers_after_the_last_chunk_sorted_and_canonical(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (raw_backend(CHUNKED_WITH_TRAILERS) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"http://127.0.0.1:{backend.port}")) as ports):
        answer = raw_request(ports["web"], b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nTrailer: X-Sum\r\n" in head
    assert body == b"5\r\nhello\r\n0\r\nX-Other: 7\r\nX-Sum: 42\r\n\r\n"


def test_trailers_of_one_response_are_not_sent_after_the_next(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (raw_backend(CHUNKED_WITH_TRAILERS) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"http://127.0.0.1:{backend.port}")) as ports):
        answer = raw_request(ports["web"], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                             b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"X-Sum: 42\r\n") == 2


def test_http2_client_gets_backend_trailers_as_a_trailing_headers_frame(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (raw_backend(CHUNKED_WITH_TRAILERS) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"http://127.0.0.1:{backend.port}")) as ports):
        answer = h2_request(ports["web"], [(b":method", b"GET"), (b":path", b"/"),
                                           (b":scheme", b"http"), (b":authority", b"x")])
    assert answer.status == 200 and answer.body == b"hello"
    assert (b"trailer", b"X-Sum") in answer.headers
    assert answer.trailers == [(b"x-other", b"7"), (b"x-sum", b"42")]


def test_a_response_without_trailers_ends_as_before_on_both_protocols(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    plain = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    with (raw_backend(plain) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"http://127.0.0.1:{backend.port}")) as ports):
        one = raw_request(ports["web"], b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        two = h2_request(ports["web"], [(b":method", b"GET"), (b":path", b"/"),
                                        (b":scheme", b"http"), (b":authority", b"x")])
    assert one.endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert two.body == b"ok" and two.trailers is None
