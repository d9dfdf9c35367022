"""Health checks of HTTP/2 servers: h2c:// servers probed over h2c, and mode grpc (gRPC's
health protocol) against a real grpcio server, with Traefik's messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.http.balancer import BalancedServer
from switchyard.http.healthcheck import HTTPHealthCheck
from switchyard.http.proxy import ReverseProxy, parse_server_url
from tests.grpckit import grpc_server, h2_backend
from tests.harness import LoopThread, free_port
from tests.integration.test_http_healthcheck import probe_once

pytest.importorskip("grpc")


def _server(url: str) -> BalancedServer:
    return BalancedServer(ReverseProxy(parse_server_url(url)), 1)


def _status(code: bytes):  # type: ignore[no-untyped-def]
    def answer(head, body):  # type: ignore[no-untyped-def]
        return [(b":status", code), (b"x-path", dict(head)[b":path"])], [b"ok"], []
    return answer


@pytest.mark.parametrize(("code", "expected"), [
    (b"200", None), (b"503", "received error status code: 503")])
def test_h2c_server_is_probed_over_http2(loop_thread: LoopThread, code: bytes,
                                         expected: str | None) -> None:
    with h2_backend(_status(code)) as backend:
        check = HTTPHealthCheck(path="/health?deep=1", timeout=2)
        assert probe_once(loop_thread, _server(f"h2c://127.0.0.1:{backend.port}"),
                          check) == expected
        assert backend.protocols == ["h2"]


def test_h2c_server_that_is_down_fails_the_probe(loop_thread: LoopThread) -> None:
    failure = probe_once(loop_thread, _server(f"h2c://127.0.0.1:{free_port()}"),
                         HTTPHealthCheck(path="/health", timeout=2))
    assert failure is not None and failure.startswith("HTTP request failed:")


def test_grpc_mode_asks_the_health_service(loop_thread: LoopThread) -> None:
    state = [1]
    with grpc_server(health=state) as port:
        server = _server(f"h2c://127.0.0.1:{port}")
        check = HTTPHealthCheck(mode="grpc", timeout=2)
        assert probe_once(loop_thread, server, check) is None
        state[0] = 2
        assert probe_once(loop_thread, server, check) == "received gRPC status code: NOT_SERVING"


def test_grpc_mode_against_a_server_without_the_health_service(loop_thread: LoopThread) -> None:
    with grpc_server() as port:
        failure = probe_once(loop_thread, _server(f"http://127.0.0.1:{port}"),
                             HTTPHealthCheck(mode="grpc", timeout=2))
    assert failure is not None
    assert failure.startswith("gRPC server does not implement the health protocol: rpc error: "
                              "code = Unimplemented")


def test_grpc_mode_uses_the_check_port_and_refuses_a_tls_scheme(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with grpc_server(health=[1]) as port:
        server = _server(f"h2c://127.0.0.1:{free_port()}")
        assert probe_once(loop_thread, server, HTTPHealthCheck(mode="grpc", port=port,
                                                               timeout=2)) is None
        refused = probe_once(loop_thread, server, HTTPHealthCheck(mode="grpc", port=port,
                                                                  scheme="https", timeout=2))
    assert refused is not None and "no transport security set" in refused


def test_grpc_mode_against_nothing_fails_unavailable(loop_thread: LoopThread) -> None:
    failure = probe_once(loop_thread, _server(f"h2c://127.0.0.1:{free_port()}"),
                         HTTPHealthCheck(mode="grpc", timeout=2))
    assert failure is not None
    assert failure.startswith("gRPC health check failed: rpc error: code = Unavailable")
