"""gRPC end to end: a real grpcio client and server with Switchyard between them, over h2c and
over TLS (ALPN h2) on both sides: unary and server-streaming calls, error statuses with their
trailing metadata, deadlines."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from tests.grpckit import grpc_server
from tests.harness import LoopThread
from tests.mwkit import serve

DYNAMIC = """
http:
  routers:
    plain:
      rule: "PathPrefix(`/`)"
      service: echo
      entryPoints: [web]
    secure:
      rule: "Host(`grpc.test`)"
      service: echo
      entryPoints: [websecure]
      tls: {{}}
  services:
    echo:
      loadBalancer:
        servers: [{{url: "{url}"}}]
        serversTransport: backend
  serversTransports:
    backend:
      rootCAs: ["{ca}"]
tls:
  certificates: [{{certFile: "{cert}", keyFile: "{key}"}}]
"""


@pytest.fixture(params=["h2c", "https"])
def through(request: pytest.FixtureRequest, loop_thread: LoopThread, tmp_path: Path,
            ca: Any) -> Iterator[dict[str, Any]]:
    """Switchyard in front of the test.Echo service, reached as h2c:// or https://."""
    issued = ca.issue_cert("grpc.test")
    cert, key, ca_file = tmp_path / "web.crt", tmp_path / "web.key", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = None
    if request.param == "https":
        backend_cert = ca.issue_cert("127.0.0.1")
        tls = (backend_cert.private_key_pem.bytes(),
               b"".join(pem.bytes() for pem in backend_cert.cert_chain_pems))
    with grpc_server(tls=tls) as port:
        dynamic = DYNAMIC.format(url=f"{request.param}://127.0.0.1:{port}", ca=ca_file,
                                 cert=cert, key=key)
        with serve(loop_thread, tmp_path, dynamic,
                   entrypoints={"web": "127.0.0.1:0", "websecure": "127.0.0.1:0"}) as ports:
            yield {"ports": ports, "ca": ca.cert_pem.bytes()}


@pytest.fixture
def channel(through: dict[str, Any]) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{through['ports']['web']}") as plain:
        yield plain


def _identity(channel: Any, method: str, streaming: bool = False) -> Any:
    make = channel.unary_stream if streaming else channel.unary_unary
    return make(f"/test.Echo/{method}")


def test_unary_call_returns_the_message_and_initial_metadata(channel: Any) -> None:
    answer, call = _identity(channel, "Unary").with_call(b"hello", timeout=5)
    assert answer == b"hello"
    assert ("x-initial", "yes") in [(item.key, item.value) for item in call.initial_metadata()]
    assert call.code() == grpc.StatusCode.OK


def test_server_streaming_call_returns_every_message_in_order(channel: Any) -> None:
    answers = list(_identity(channel, "Stream", streaming=True)(b"\x05ab", timeout=5))
    assert answers == [b"\x05ab" + bytes([index]) for index in range(5)]


def test_large_messages_pass_both_ways(channel: Any) -> None:
    message = bytes(range(256)) * 12_000  # 3 MB, beyond the windows of both hops
    assert _identity(channel, "Unary")(message, timeout=20) == message


def test_error_status_message_and_trailing_metadata_reach_the_client(channel: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _identity(channel, "Fail")(b"widget", timeout=5)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "no such thing: widget"
    assert ("x-reason", "bad-input") in [(i.key, i.value) for i in error.trailing_metadata()]


def test_deadline_expires_as_deadline_exceeded_and_the_channel_goes_on(channel: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _identity(channel, "Slow")(b"\x05", timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _identity(channel, "Unary")(b"after", timeout=5) == b"after"


def test_concurrent_calls_on_one_channel(channel: Any) -> None:
    unary = _identity(channel, "Unary")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: unary(b"call-%d" % n, timeout=10), range(64)))
    assert answers == [b"call-%d" % n for n in range(64)]


def test_client_over_tls_with_alpn_h2(through: dict[str, Any]) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=through["ca"])
    with grpc.secure_channel(f"127.0.0.1:{through['ports']['websecure']}", credentials,
                             options=(("grpc.ssl_target_name_override", "grpc.test"),)) as tls:
        assert _identity(tls, "Unary")(b"secure", timeout=5) == b"secure"
        assert len(list(_identity(tls, "Stream", streaming=True)(b"\x03", timeout=5))) == 3
