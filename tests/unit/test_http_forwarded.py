"""The entry point's forwarded-headers step, as Traefik's XForwarded middleware behaves."""

from __future__ import annotations

import pytest

from switchyard.http.forwarded import ForwardedHeaders, apply_forwarded_headers, is_managed_header
from switchyard.http.message import Headers


def apply(pairs: list[tuple[bytes, bytes]], *, trusted: bool = False, tls: bool = False,
          kept: frozenset[bytes] = frozenset()) -> Headers:
    return apply_forwarded_headers(Headers(pairs), trusted=trusted, client_ip="192.0.2.9",
                                   tls=tls, hostname=b"edge", kept=kept)


def as_dict(headers: Headers) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value)
    return found


SPOOF = [(b"Host", b"app.test"), (b"X-Forwarded-For", b"1.1.1.1"),
         (b"X-Forwarded-Proto", b"https"), (b"X-Real-Ip", b"1.1.1.1"),
         (b"X-Forwarded-Prefix", b"/p"), (b"x_forwarded_host", b"evil")]


def test_untrusted_peer_loses_managed_headers_and_gets_ours() -> None:
    seen = as_dict(apply(SPOOF))
    assert seen == {
        b"host": [b"app.test"], b"x-real-ip": [b"192.0.2.9"], b"x-forwarded-proto": [b"http"],
        b"x-forwarded-port": [b"80"], b"x-forwarded-host": [b"app.test"],
        b"x-forwarded-server": [b"edge"],
    }


def test_trusted_peer_keeps_its_values() -> None:
    seen = as_dict(apply(SPOOF, trusted=True))
    assert seen[b"x-forwarded-for"] == [b"1.1.1.1"]
    assert seen[b"x-forwarded-proto"] == [b"https"]
    assert seen[b"x-real-ip"] == [b"1.1.1.1"]
    assert seen[b"x-forwarded-port"] == [b"443"]  # from the kept https proto
    assert seen[b"x-forwarded-prefix"] == [b"/p"]


def test_several_x_forwarded_for_fields_are_folded() -> None:
    seen = apply([(b"X-Forwarded-For", b"a"), (b"X-Forwarded-For", b"b")], trusted=True)
    assert seen.values(b"x-forwarded-for") == [b"a, b"]


@pytest.mark.parametrize(("host", "tls", "port"), [
    (b"app.test:8443", False, b"8443"), (b"app.test", True, b"443"), (b"[::1]:81", False, b"81"),
    (b"[::1]", False, b"80"), (b"app.test", False, b"80"),
])
def test_forwarded_port_comes_from_host_then_scheme(host: bytes, tls: bool, port: bytes) -> None:
    assert apply([(b"Host", host)], tls=tls).get(b"x-forwarded-port") == port


def test_websocket_handshake_gets_ws_proto() -> None:
    upgrade = [(b"Host", b"a"), (b"Connection", b"keep-alive, Upgrade"),
               (b"Upgrade", b"websocket")]
    assert apply(upgrade).get(b"x-forwarded-proto") == b"ws"
    assert apply(upgrade, tls=True).get(b"x-forwarded-proto") == b"wss"
    seen = apply(upgrade)
    assert seen.values(b"connection") == [b"Upgrade"]
    assert seen.values(b"upgrade") == [b"websocket"]


def test_connection_names_are_dropped_except_managed_and_kept() -> None:
    seen = apply([(b"Host", b"a"), (b"Connection", b"X-Drop, X-Keep, X-Forwarded-Proto"),
                  (b"X-Drop", b"1"), (b"X-Keep", b"2"), (b"X-Forwarded-Proto", b"https")],
                 trusted=True, kept=frozenset({b"x-keep"}))
    as_seen = as_dict(seen)
    assert b"x-drop" not in as_seen
    assert as_seen[b"x-keep"] == [b"2"]
    assert as_seen[b"connection"] == [b"X-Keep"]
    assert as_seen[b"x-forwarded-proto"] == [b"https"]


def test_managed_names_include_underscore_variants() -> None:
    assert is_managed_header(b"x_real_ip")
    assert is_managed_header(b"x-forwarded-tls-client-cert-info")
    assert not is_managed_header(b"x-request-id")


def test_trust_follows_trusted_ips_or_insecure() -> None:
    policy = ForwardedHeaders(trusted_ips=("10.0.0.0/8", "::1"))
    assert policy.trusts("10.1.2.3") and policy.trusts("::1")
    assert not policy.trusts("192.0.2.1")
    assert ForwardedHeaders(insecure=True).trusts("192.0.2.1")
    assert not ForwardedHeaders().trusts("127.0.0.1")
    with pytest.raises(ValueError, match="not-an-ip"):
        ForwardedHeaders(trusted_ips=("not-an-ip",))
