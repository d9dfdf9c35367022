"""Network addresses as Go prints and parses them: `host:port`, `[v6]:port`, IPv4-mapped IPv6."""

from __future__ import annotations


def host_port(host: str, port: int | str) -> str:
    """`host:port`, with an IPv6 host in brackets (`[::1]:8080`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into parts; ValueError when there is no usable port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"address {address!r}: put an IPv6 host in brackets, e.g. [::1]:8080")
    number = int(port)
    if number > 65535:
        raise ValueError(f"address {address!r}: port {number} is out of range")
    return host, number


def peer_address(sockaddr: object) -> tuple[str, int]:
    """A socket address as Go shows it: IPv4-mapped IPv6 becomes plain IPv4; ("", 0) if none."""
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        return "", 0
    host = str(sockaddr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(sockaddr[1])
