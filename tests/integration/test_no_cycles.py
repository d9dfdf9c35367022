"""A finished connection leaves no reference cycle behind, on either engine.

Objects in a cycle outlive their connection until the cyclic garbage collector runs, and
each collection walks every live object: a cycle per connection costs CPU on every new
connection and memory between collections. Reference counting alone must free a plain
relay, a TLS passthrough and a TLS termination once the connection ends, and so must an HTTP
router's exchange, over HTTP and HTTPS. The collector is switched off while the connections
run; afterwards it must find nothing of Switchyard's.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.proxy import fastpath
from tests.harness import LoopThread, start_router, stop_router

CONNECTIONS = 40
ANSWER = b"x" * 3000

ENGINES = ["portable", *(["fast"] if fastpath.available() else [])]


@pytest.fixture
def backend_port(loop_thread: LoopThread) -> Iterator[int]:
    """Reads what the client sends first, answers ANSWER (in an HTTP response to a GET) and
    closes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(65536)
        if first.startswith(b"GET "):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ANSWER))
        writer.write(ANSWER)
        await writer.drain()
        writer.close()

    server = loop_thread.run(asyncio.start_server(serve, "127.0.0.1", 0))
    yield int(server.sockets[0].getsockname()[1])

    async def close() -> None:
        server.close()

    loop_thread.run(close())


def _client_hello() -> bytes:
    """A real ClientHello for `localhost` (what a passthrough router reads first)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _dynamic(kind: str, port: int, cert: str, key: str) -> str:
    certificates = f"""
tls:
  certificates:
    - certFile: "{cert}"
      keyFile: "{key}"
"""
    if kind in ("http", "https"):
        return f"""
http:
  routers:
    only:
      entryPoints: [ep]
      rule: "PathPrefix(`/`)"
      service: backend
{"      tls: {}" if kind == "https" else ""}
  services:
    backend:
      loadBalancer:
        servers: [{{url: "http://127.0.0.1:{port}"}}]
""" + certificates
    rule, tls = {"plain": ("HostSNI(`*`)", ""),
                 "passthrough": ("HostSNI(`localhost`)", "      tls: {passthrough: true}\n"),
                 "termination": ("HostSNI(`localhost`)", "      tls: {}\n")}[kind]
    return f"""
tcp:
  routers:
    only:
      entryPoints: [ep]
      rule: "{rule}"
      service: backend
{tls}  services:
    backend:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{port}"}}]
""" + certificates


def _garbage_of_switchyard() -> Counter[str]:
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                       if type(o).__module__.startswith("switchyard"))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["plain", "passthrough", "termination", "http", "https"])
def test_a_finished_connection_leaves_no_cycle(kind: str, engine: str, loop_thread: LoopThread,
                                               backend_port: int, tmp_path: Path, ca: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    issued = ca.issue_cert("localhost")
    cert, key = tmp_path / "localhost.crt", tmp_path / "localhost.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    monkeypatch.setattr(fastpath, "ENGINE", engine)
    app = start_router(loop_thread, tmp_path, _dynamic(kind, backend_port, str(cert), str(key)))
    entrypoint = app.entrypoints["ep"]
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    hello = _client_hello()

    def one() -> None:
        with socket.create_connection(("127.0.0.1", entrypoint.port), timeout=5) as raw:
            sock: socket.socket = raw
            if kind in ("termination", "https"):
                sock = client_tls.wrap_socket(raw, server_hostname="localhost")
            if kind in ("http", "https"):
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            else:
                sock.sendall(hello if kind == "passthrough" else b"hello")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            if kind in ("http", "https"):
                assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(ANSWER)
            else:
                assert received == ANSWER

    def settle() -> None:
        deadline = time.monotonic() + 5
        while entrypoint.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not entrypoint.connections
        time.sleep(0.05)  # the last closes and their callbacks run on the loop

    try:
        for _ in range(5):
            one()  # first-use caches and lazily built objects are not cycles per connection
        settle()
        gc.collect()
        gc.disable()
        try:
            for _ in range(CONNECTIONS):
                one()
            settle()
            assert _garbage_of_switchyard() == Counter()
        finally:
            gc.enable()
    finally:
        stop_router(loop_thread, app)
