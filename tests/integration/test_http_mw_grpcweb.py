"""grpcWeb: hand-built gRPC-Web calls (binary and base64 text) through Switchyard to a real
grpcio server over h2c, their CORS preflights, and plain gRPC on the same router."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.grpckit import grpc_frame, grpc_server
from tests.grpcwebkit import call
from tests.harness import LoopThread
from tests.mwkit import serve

grpc = pytest.importorskip("grpc")

ORIGIN = "https://app.test"
DYNAMIC = """
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: s, middlewares: [web]}}
  middlewares:
    web: {{grpcWeb: {{allowOrigins: ["{origin}"]}}}}
  services:
    s: {{loadBalancer: {{servers: [{{url: "h2c://127.0.0.1:{port}"}}]}}}}
"""


@pytest.fixture
def port(loop_thread: LoopThread, tmp_path: Path) -> Iterator[int]:
    with (grpc_server() as backend,
          serve(loop_thread, tmp_path, DYNAMIC.format(origin=ORIGIN, port=backend)) as ports):
        yield ports["web"]


def _web(kind: str = "application/grpc-web+proto", origin: str = ORIGIN) -> dict[str, str]:
    return {"Content-Type": kind, "X-Grpc-Web": "1", "Origin": origin}


def test_binary_call_gets_messages_then_the_trailer_frame(port: int) -> None:
    seen = call(port, "POST", "/test.Echo/Unary", _web(), grpc_frame(b"hello"))
    assert seen["status"] == 200
    fields = dict(seen["fields"])
    assert fields["Content-Type"] == "application/grpc-web"
    assert fields["Access-Control-Allow-Origin"] == ORIGIN
    assert fields["Access-Control-Allow-Credentials"] == "true"
    assert "X-Initial" in fields["Access-Control-Expose-Headers"].split(", ")
    assert seen["body"] == [(0, b"hello"), (0x80, b"grpc-message: \r\ngrpc-status: 0\r\n")]


def test_text_call_is_decoded_for_the_backend_and_encoded_back(port: int) -> None:
    body = base64.b64encode(grpc_frame(b"\x03"))
    seen = call(port, "POST", "/test.Echo/Stream", _web("application/grpc-web-text"), body)
    assert dict(seen["fields"])["Content-Type"] == "application/grpc-web-text"
    assert seen["body"][:3] == [(0, b"\x03" + bytes([index])) for index in range(3)]
    assert seen["body"][3][0] == 0x80


def test_text_body_in_several_padded_parts_and_pieces(port: int) -> None:
    body = base64.b64encode(grpc_frame(b"ab"))  # one message, sent as padded parts
    seen = call(port, "POST", "/test.Echo/Unary", _web("application/grpc-web-text"), body)
    assert seen["body"][0] == (0, b"ab")


def test_error_status_arrives_as_header_fields_and_an_empty_trailer_frame(port: int) -> None:
    seen = call(port, "POST", "/test.Echo/Fail", _web(), grpc_frame(b"w"))
    fields = dict(seen["fields"])
    assert (fields["Grpc-Status"], fields["Grpc-Message"]) == ("3", "no such thing: w")
    assert fields["X-Reason"] == "bad-input"
    assert seen["body"] == [(0x80, b"")]


def test_origin_not_allowed_gets_no_cors_grant_but_the_call_is_served(port: int) -> None:
    seen = call(port, "POST", "/test.Echo/Unary", _web(origin="https://evil.test"),
                grpc_frame(b"x"))
    fields = dict(seen["fields"])
    assert "Access-Control-Allow-Origin" not in fields and fields["Vary"] == "Origin"
    assert seen["body"][0] == (0, b"x")


def test_preflight_is_answered_by_the_middleware(port: int) -> None:
    seen = call(port, "OPTIONS", "/test.Echo/Unary", {
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-grpc-web,x-user-agent"})
    assert seen["status"] == 200 and seen["body"] == b""
    assert seen["fields"] == sorted([
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Headers", "Content-Type, X-Grpc-Web, X-User-Agent"),
        ("Access-Control-Allow-Methods", "POST"), ("Access-Control-Allow-Origin", ORIGIN),
        ("Access-Control-Max-Age", "600"), ("Content-Length", "0"), ("Vary", "Origin"),
        ("Vary", "Access-Control-Request-Method"), ("Vary", "Access-Control-Request-Headers")])


@pytest.mark.parametrize("asking", [{"Origin": "https://evil.test"}, {},
                                    {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}])
def test_preflight_refused_gets_only_vary(port: int, asking: dict[str, str]) -> None:
    headers = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "x-grpc-web", **asking}
    seen = call(port, "OPTIONS", "/test.Echo/Unary", headers)
    assert [name for name, _ in seen["fields"]] == ["Content-Length", "Vary", "Vary", "Vary"]


def test_plain_grpc_on_the_same_router_is_untouched(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert channel.unary_unary("/test.Echo/Unary")(b"plain", timeout=5) == b"plain"


def test_allow_origins_of_the_wrong_shape_is_refused_naming_the_key() -> None:
    from switchyard.http.middlewares.base import MiddlewareError
    from switchyard.http.middlewares.grpcweb import build

    with pytest.raises(MiddlewareError, match="allowOrigins"):
        build({"allowOrigins": {"https://app.test": True}}, None)  # type: ignore[arg-type]
