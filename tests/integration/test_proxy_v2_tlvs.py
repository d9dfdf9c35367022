"""PROXY v2 TLVs out (alpn, authority, ssl), compared with what HAProxy's send-proxy-v2-ssl sends."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.proxy.proxyproto import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_SSL,
    ProxyKind,
    read_proxy_header,
)
from tests.harness import LoopThread, ensure_command, free_port, start_router, stop_router


class Capture:
    """A backend that reads a PROXY header, keeps its TLVs, answers "ok" and closes."""

    def __init__(self, loop_thread: LoopThread) -> None:
        self.headers: list[dict[int, bytes]] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = b""
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                data += chunk
                found = read_proxy_header(data)
                if found.kind is not ProxyKind.NEED_MORE:
                    break
            assert found.header is not None
            self.headers.append(dict(found.header.tlvs))
            writer.write(b"ok")
            await writer.drain()
            writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(serve, "127.0.0.1", 0)

        self.server = loop_thread.run(start())
        self.port = int(self.server.sockets[0].getsockname()[1])


def ssl_parts(value: bytes) -> tuple[int, int, dict[int, bytes]]:
    """PP2_TYPE_SSL: client flags, verify, and its sub-TLVs."""
    client, verify, subs, pos = value[0], int.from_bytes(value[1:5], "big"), {}, 5
    while pos < len(value):
        length = int.from_bytes(value[pos + 1:pos + 3], "big")
        subs[value[pos]] = value[pos + 3:pos + 3 + length]
        pos += 3 + length
    return client, verify, subs


def through(port: int, ca: Any) -> bytes:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="mail.test") as sock:
        sock.sendall(b"hi")
        return sock.recv(10)


@pytest.fixture
def haproxy(tmp_path: Path, ca: Any, loop_thread: LoopThread) -> Iterator[tuple[int, Capture]]:
    try:
        binary = ensure_command("haproxy", "haproxy")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        pytest.skip(f"HAProxy unavailable: {exc}")
    capture = Capture(loop_thread)
    cert = ca.issue_cert("mail.test")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "mail.pem")
    port = free_port()
    (tmp_path / "haproxy.cfg").write_text(f"""
defaults
  mode tcp
  timeout connect 2s
  timeout client 5s
  timeout server 5s
frontend front
  bind 127.0.0.1:{port} ssl crt {tmp_path / "mail.pem"} alpn h2,http/1.1
  default_backend back
backend back
  server capture 127.0.0.1:{capture.port} send-proxy-v2-ssl proxy-v2-options authority
""")
    process = subprocess.Popen([binary, "-f", str(tmp_path / "haproxy.cfg"), "-db"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)
    yield port, capture
    process.terminate()
    process.wait(5)


def test_terminated_tls_sends_the_tlvs_haproxy_sends_and_passthrough_only_the_authority(
        loop_thread: LoopThread, tmp_path: Path, ca: Any,
        haproxy: tuple[int, Capture]) -> None:
    haproxy_port, capture = haproxy
    assert through(haproxy_port, ca) == b"ok"
    theirs = capture.headers.pop()
    ours_cert = ca.issue_cert("mail.test")
    ours_cert.cert_chain_pems[0].write_to_path(tmp_path / "ours.crt")
    ours_cert.private_key_pem.write_to_path(tmp_path / "ours.key")
    tlvs = {"version": 2, "tlvs": ["alpn", "authority", "ssl"]}
    server = [{"address": f"127.0.0.1:{capture.port}"}]
    app = start_router(loop_thread, tmp_path, json.dumps({
        "tcp": {"routers": {"ended": {"rule": "HostSNI(`mail.test`)", "service": "s",
                                      "entryPoints": ["ended"], "tls": {}},
                            "passed": {"rule": "HostSNI(`mail.test`)", "service": "back",
                                       "entryPoints": ["passed"], "tls": {"passthrough": True}}},
                "services": {"s": {"loadBalancer": {"servers": server, "proxyProtocol": tlvs}},
                             "back": {"loadBalancer": {"servers": server,
                                                       "proxyProtocol": tlvs}}}},
        "tls": {"certificates": [{"certFile": str(tmp_path / "ours.crt"),
                                  "keyFile": str(tmp_path / "ours.key")}]}}),
        entrypoints={"ended": "127.0.0.1:0", "passed": "127.0.0.1:0"})
    try:
        assert through(app.entrypoints["ended"].port, ca) == b"ok"
        ours = capture.headers.pop()
        assert ours == theirs  # alpn, authority and ssl, byte for byte
        assert ours[PP2_TYPE_AUTHORITY] == b"mail.test" and ours[PP2_TYPE_ALPN] == b"h2"
        client, verify, subs = ssl_parts(ours[PP2_TYPE_SSL])
        assert (client, verify, subs) == (1, 0, {0x21: b"TLSv1.3"})
        # Passed through, the handshake is not Switchyard's: only the SNI can be told.
        with pytest.raises((ssl.SSLError, OSError)):
            through(app.entrypoints["passed"].port, ca)  # the capture server speaks no TLS
        assert capture.headers.pop() == {PP2_TYPE_AUTHORITY: b"mail.test"}
    finally:
        stop_router(loop_thread, app)


def test_haproxy_reads_the_header_and_its_authority(loop_thread: LoopThread, tmp_path: Path,
                                                    ca: Any) -> None:
    try:
        binary = ensure_command("haproxy", "haproxy")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        pytest.skip(f"HAProxy unavailable: {exc}")
    port = free_port()
    (tmp_path / "reader.cfg").write_text(f"""
defaults
  mode http
  timeout connect 2s
  timeout client 5s
  timeout server 5s
frontend reader
  bind 127.0.0.1:{port} accept-proxy
  http-request return status 200 content-type text/plain lf-string "authority=%[fc_pp_authority] client=%[src]"
""")
    process = subprocess.Popen([binary, "-f", str(tmp_path / "reader.cfg"), "-db"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        cert = ca.issue_cert("mail.test")
        cert.cert_chain_pems[0].write_to_path(tmp_path / "ours.crt")
        cert.private_key_pem.write_to_path(tmp_path / "ours.key")
        app = start_router(loop_thread, tmp_path, json.dumps({
            "tcp": {"routers": {"ended": {"rule": "HostSNI(`mail.test`)", "service": "s",
                                          "tls": {}}},
                    "services": {"s": {"loadBalancer": {
                        "servers": [{"address": f"127.0.0.1:{port}"}],
                        "proxyProtocol": {"version": 2, "tlvs": ["alpn", "authority", "ssl"]}}}}},
            "tls": {"certificates": [{"certFile": str(tmp_path / "ours.crt"),
                                      "keyFile": str(tmp_path / "ours.key")}]}}))
        try:
            context = ssl.create_default_context()
            ca.configure_trust(context)
            with socket.create_connection(("127.0.0.1", app.entrypoints["ep"].port),
                                          timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname="mail.test") as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: mail.test\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            assert answer.endswith(b"authority=mail.test client=127.0.0.1"), answer
        finally:
            stop_router(loop_thread, app)
    finally:
        process.terminate()
        process.wait(5)
