"""The entry point's X-Forwarded-* handling, as Traefik's forwardedHeaders applies it to requests.

Before routing, Traefik drops every X-Forwarded-* header it manages (and X-Real-Ip) unless the
peer is trusted (``forwardedHeaders.trustedIPs``) or ``insecure`` is set, then fills in what is
missing: X-Real-Ip, X-Forwarded-Proto (``ws``/``wss`` for a WebSocket handshake), -Port, -Host,
folds several X-Forwarded-For fields into one, always sets X-Forwarded-Server to the host name,
and applies the Connection header (drops the fields it names, except the managed ones and those
in ``forwardedHeaders.connection``; keeps Upgrade). The reverse proxy appends the client address
to X-Forwarded-For afterwards (switchyard.http.rewrite).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from switchyard.http.message import Headers
from switchyard.ipcheck import IPChecker

__all__ = ["MANAGED_HEADERS", "ForwardedHeaders", "apply_forwarded_headers", "is_managed_header"]

#: The headers Traefik owns, lower-case.
MANAGED_HEADERS = frozenset({
    b"x-forwarded-proto", b"x-forwarded-scheme", b"x-forwarded-for", b"x-forwarded-host",
    b"x-forwarded-port", b"x-forwarded-server", b"x-forwarded-uri", b"x-forwarded-method",
    b"x-forwarded-prefix", b"x-forwarded-tls-client-cert", b"x-forwarded-tls-client-cert-info",
    b"x-scheme", b"x-real-ip",
})


def is_managed_header(lower_name: bytes) -> bool:
    """Whether a (lower-case) field name is one of Traefik's, underscores counting as dashes."""
    if lower_name[:1] != b"x":
        return False
    return lower_name in MANAGED_HEADERS or (
        b"_" in lower_name and lower_name.replace(b"_", b"-") in MANAGED_HEADERS)


@dataclass(frozen=True, slots=True)
class ForwardedHeaders:
    """An entry point's ``forwardedHeaders`` settings (``trustedIPs``, ``insecure``, ``connection``)."""

    trusted_ips: tuple[str, ...] = ()
    insecure: bool = False
    connection: tuple[str, ...] = ()  # Connection-listed fields to keep (Traefik's option)
    hostname: str = field(default_factory=socket.gethostname)
    _checker: IPChecker | None = field(init=False, repr=False, compare=False)
    _kept: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Raises ValueError naming a bad entry, for the entry point's error message.
        checker = IPChecker(self.trusted_ips) if self.trusted_ips else None
        object.__setattr__(self, "_checker", checker)
        object.__setattr__(self, "_kept", frozenset(
            name.lower().encode("latin-1") for name in self.connection))

    def trusts(self, client_ip: str) -> bool:
        """Whether incoming X-Forwarded-* headers from ``client_ip`` are kept."""
        return self.insecure or (self._checker is not None and self._checker.contains(client_ip))

    @property
    def kept_connection_headers(self) -> frozenset[bytes]:
        return self._kept


def apply_forwarded_headers(headers: list[tuple[bytes, bytes]], *, trusted: bool, client_ip: str, tls: bool,
                            hostname: bytes, kept: frozenset[bytes] = frozenset()) -> Headers:
    """The request's fields after the entry point's forwarded-headers step (a new list)."""
    out = Headers()
    real_ip = proto = port = xf_host = host = connection = upgrade = None
    forwarded_for: list[bytes] = []
    for pair in headers:
        name = pair[0]
        first = name[0] if name else 0
        if first not in _LOOKS_AT:  # most fields: one test
            out.append(pair)
            continue
        if first in _X:
            lower = name.lower()
            if is_managed_header(lower):
                if not trusted:
                    continue
                # Go's Get reads the canonical key only; underscore variants just pass.
                if lower == b"x-forwarded-for":
                    forwarded_for.append(pair[1])
                    continue
                if lower == b"x-real-ip":
                    real_ip = real_ip if real_ip is not None else pair[1]
                elif lower == b"x-forwarded-proto":
                    proto = proto if proto is not None else pair[1]
                elif lower == b"x-forwarded-port":
                    port = port if port is not None else pair[1]
                elif lower == b"x-forwarded-host":
                    xf_host = xf_host if xf_host is not None else pair[1]
                elif lower == b"x-forwarded-server":
                    continue  # always replaced
        elif first in _H and len(name) == 4 and name.lower() == b"host":
            host = host if host is not None else pair[1]
        elif first in _C_OR_U:
            lower = name.lower()
            if lower == b"connection":
                connection = pair[1] if connection is None else connection + b"," + pair[1]
                continue
            if lower == b"upgrade":
                upgrade = upgrade if upgrade is not None else pair[1]
        out.append(pair)
    # Present but empty counts as missing (Go's Get); only then is there a field to replace.
    add = out.append
    if not real_ip:
        _put(out, real_ip, b"x-real-ip", b"X-Real-Ip", client_ip.partition("%")[0].encode())
    if not proto:
        websocket = connection is not None and (_first_value_lists(connection, b"upgrade")
                                                and _first_value_lists(upgrade, b"websocket"))
        value = (b"wss" if tls else b"ws") if websocket else (b"https" if tls else b"http")
        _put(out, proto, b"x-forwarded-proto", b"X-Forwarded-Proto", value)
        proto = value
    if not port:
        _put(out, port, b"x-forwarded-port", b"X-Forwarded-Port",
             _forwarded_port(host, proto, tls))
    if not xf_host and host:
        _put(out, xf_host, b"x-forwarded-host", b"X-Forwarded-Host", host)
    if forwarded_for:
        add((b"X-Forwarded-For", b", ".join(forwarded_for)))
    if hostname:
        add((b"X-Forwarded-Server", hostname))
    if connection is not None:
        _apply_connection(out, connection, upgrade, kept)
    return out


# First bytes of the names the loop above looks at (an int in a frozenset is a cheap test,
# where `name[:1] in b"xX"` goes through the buffer protocol).
_X = frozenset(b"xX")
_H = frozenset(b"hH")
_C_OR_U = frozenset(b"cCuU")
_LOOKS_AT = _X | _H | _C_OR_U


def _put(out: Headers, seen: bytes | None, name: bytes, spelling: bytes, value: bytes) -> None:
    if seen is None:
        out.append((spelling, value))
    else:
        out.set(name, value, spelling)


def _first_value_lists(value: bytes | None, token: bytes) -> bool:
    if value is None:
        return False
    return any(part.strip().lower() == token for part in value.split(b","))


def _forwarded_port(host: bytes | None, proto: bytes, tls: bool) -> bytes:
    if host:
        # net.SplitHostPort: "[v6]:port", "name:port"; a bare v6 address or name has no port.
        if host[:1] == b"[":
            end = host.find(b"]")
            if end > 0 and host[end + 1:end + 2] == b":" and host[end + 2:]:
                return host[end + 2:]
        elif host.count(b":") == 1:
            port = host.rpartition(b":")[2]
            if port:
                return port
    if proto in (b"https", b"wss") or tls:
        return b"443"
    return b"80"


def _apply_connection(out: Headers, connection: bytes, upgrade: bytes | None,
                      kept: frozenset[bytes]) -> None:
    listed: list[bytes] = []
    upgrading = False
    for token in connection.split(b","):
        name = token.strip().lower()
        if not name:
            continue
        if name == b"upgrade":
            upgrading = True
        if is_managed_header(name):
            continue
        if name in kept:
            listed.append(_canonical(name))
            continue
        out.remove(name)
    if upgrading and upgrade:
        listed.append(b"Upgrade")
        out.set(b"upgrade", upgrade, b"Upgrade")
    if listed:
        out.append((b"Connection", b",".join(listed)))


def _canonical(name: bytes) -> bytes:
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))
