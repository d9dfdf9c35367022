"""Reverse-proxy rewriting: URL joining, targets, hop-by-hop fields, X-Forwarded-For."""

from __future__ import annotations

import pytest

from switchyard.http.message import Headers
from switchyard.http.rewrite import (
    backend_request_head,
    join_url_path,
    outgoing_target,
    response_headers_for_client,
)


@pytest.mark.parametrize(("base", "path", "joined"), [
    (b"", b"/a", b"/a"),
    (b"/", b"/a", b"/a"),
    (b"/base", b"/a", b"/base/a"),
    (b"/base/", b"/a", b"/base/a"),
    (b"/base", b"a", b"/base/a"),
    (b"/base/", b"", b"/base/"),
    (b"/b%2Fx/", b"/a%20b", b"/b%2Fx/a%20b"),
])
def test_join_url_path_puts_exactly_one_slash_between(base: bytes, path: bytes,
                                                     joined: bytes) -> None:
    assert join_url_path(base, path) == joined


@pytest.mark.parametrize(("target", "server_path", "preserve", "sent"), [
    (b"/a/b", b"/base", False, b"/a/b"),
    (b"/a/b", b"/base", True, b"/base/a/b"),
    (b"/a?x=1;y=2", b"", False, b"/a?x=1&y=2"),
    (b"/a?", b"", False, b"/a?"),
    (b"http://other.test/p?q=1", b"", False, b"/p?q=1"),
    (b"http://other.test", b"", False, b"/"),
    (b"http://other.test?q", b"/s", True, b"/s/?q"),
    (b"*", b"", False, b"*"),
])
def test_outgoing_target_keeps_the_request_path_unless_preserve_path(
        target: bytes, server_path: bytes, preserve: bool, sent: bytes) -> None:
    assert outgoing_target(target, server_path, preserve) == sent


def fields(*pairs: tuple[bytes, bytes]) -> Headers:
    return Headers(pairs)


def sent(*pairs: tuple[bytes, bytes], client_ip: str | None = None, host: bytes = b"server",
         replace_host: bool = False, chunked: bool = False) -> list[bytes]:
    """The lines of the head sent to the backend, request line first."""
    head = backend_request_head(b"GET", b"/p", list(pairs), client_ip=client_ip, host=host,
                                replace_host=replace_host, chunked=chunked)
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")


def test_backend_request_loses_hop_by_hop_fields_and_those_connection_names() -> None:
    assert sent(
        (b"Host", b"a"), (b"Connection", b"keep-alive, X-Token"), (b"X-Token", b"t"),
        (b"Keep-Alive", b"300"), (b"Proxy-Connection", b"x"), (b"TE", b"gzip"),
        (b"Trailer", b"X"), (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"h2c"),
        (b"Proxy-Authorization", b"Basic x"), (b"Accept", b"*/*"), client_ip="192.0.2.1",
    ) == [b"GET /p HTTP/1.1", b"Host: a", b"Accept: */*", b"X-Forwarded-For: 192.0.2.1"]


def test_te_trailers_survives_and_a_missing_host_is_added() -> None:
    assert sent((b"TE", b"deflate, trailers")) == [
        b"GET /p HTTP/1.1", b"Host: server", b"Te: trailers"]


def test_client_is_appended_to_folded_x_forwarded_for() -> None:
    lines = sent((b"Host", b"a"), (b"X-Forwarded-For", b"203.0.113.1"),
                 (b"X-Forwarded-For", b"10.0.0.1"), client_ip="127.0.0.1")
    assert lines[-1] == b"X-Forwarded-For: 203.0.113.1, 10.0.0.1, 127.0.0.1"


def test_host_is_replaced_and_an_upgrade_handshake_kept() -> None:
    assert sent((b"Host", b"client.test"), (b"Connection", b"Upgrade"),
                (b"Upgrade", b"websocket"), host=b"10.0.0.5:8080", replace_host=True) == [
        b"GET /p HTTP/1.1", b"Host: 10.0.0.5:8080", b"Connection: Upgrade",
        b"Upgrade: websocket"]


def test_upgrade_without_connection_upgrade_is_dropped() -> None:
    assert sent((b"Upgrade", b"h2c")) == [b"GET /p HTTP/1.1", b"Host: server"]


def test_chunked_body_is_announced() -> None:
    assert sent((b"Host", b"a"), chunked=True)[-1] == b"Transfer-Encoding: chunked"


def test_client_response_loses_hop_by_hop_but_101_keeps_upgrade() -> None:
    backend = fields((b"Connection", b"close, X-Internal"), (b"X-Internal", b"1"),
                     (b"Keep-Alive", b"timeout=5"), (b"Transfer-Encoding", b"chunked"),
                     (b"Upgrade", b"websocket"), (b"Content-Type", b"text/plain"))
    assert response_headers_for_client(backend, switching=False) == (
        [(b"Content-Type", b"text/plain")], True)
    assert response_headers_for_client(fields((b"X", b"1")), switching=False)[1] is False
    switched, _ = response_headers_for_client(
        fields((b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"),
               (b"Sec-WebSocket-Accept", b"k")), switching=True)
    assert [name for name, _ in switched] == [b"Connection", b"Upgrade", b"Sec-WebSocket-Accept"]
