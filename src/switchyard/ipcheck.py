"""IP allow-list checking with Traefik's ``pkg/ip/checker.go`` address semantics."""

from __future__ import annotations

import functools
import socket
from collections.abc import Sequence

_V4_BITS = 32
_V6_BITS = 128
_V4_ALL = (1 << _V4_BITS) - 1
# An IPv4-mapped IPv6 address is ::ffff:a.b.c.d, i.e. 0xffff in the 32 bits above the IPv4 part.
_MAPPED_TAG = 0xFFFF
_ANSWERS_KEPT = 4096  # addresses whose answer one checker remembers (of each kind)


def _strict_ipv4(text: str) -> bytes | None:
    """Four decimal octets, no leading zeros (Go rejects them), nothing else."""
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # ValueError: NUL or unencodable characters
        return None
    # inet_pton's leniency differs between C libraries; the dotted quad text of an
    # address is unique, so a round trip pins down exactly Go's accepted syntax.
    if socket.inet_ntop(socket.AF_INET, packed) != text:
        return None
    return packed


# Per-connection checks see the same client addresses again and again.
@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> tuple[int, int] | None:
    """Parse a zone-less IP into ``(bit length, value)``; IPv6 text stays 128-bit."""
    if ":" not in text:
        packed = _strict_ipv4(text)
        return None if packed is None else (_V4_BITS, int.from_bytes(packed, "big"))
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    tail = text[text.rfind(":") + 1 :]
    if "." in tail and _strict_ipv4(tail) is None:
        return None
    return _V6_BITS, int.from_bytes(packed, "big")


def _canonical(bits: int, value: int) -> tuple[int, int]:
    """Fold IPv4-mapped IPv6 onto IPv4, which Go's ``net.IP`` treats as the same address."""
    if bits == _V6_BITS and value >> _V4_BITS == _MAPPED_TAG:
        return _V4_BITS, value & _V4_ALL
    return bits, value


def _mask(bits: int, prefix: int) -> int:
    return ((1 << prefix) - 1) << (bits - prefix)


def _parse_entry(entry: str) -> tuple[int, int, int]:
    """Parse an allow-list entry into ``(family bits, network, mask)``; raise ValueError."""

    def invalid(reason: str) -> ValueError:
        return ValueError(f'invalid IP or CIDR "{entry}": {reason}')

    if "%" in entry:
        raise invalid("zones (like %eth0) are not allowed")
    address, slash, prefix_text = entry.partition("/")
    parsed = _parse_ip(address)
    if parsed is None:
        if any(part[:1] == "0" and part[1:2].isdigit() for part in address.split(".")):
            raise invalid("IPv4 octets must not have leading zeros")
        raise invalid("not an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32")
    bits, value = parsed
    if not slash:
        family, value = _canonical(bits, value)
        return family, value, _mask(family, family)
    if not (prefix_text.isascii() and prefix_text.isdigit()):
        raise invalid(f'prefix length "{prefix_text}" is not a decimal number')
    # Leading zeros are fine (Go's dtoi takes them); bound the digits before int() does.
    significant = prefix_text.lstrip("0") or "0"
    prefix = int(significant) if len(significant) <= 3 else bits + 1
    if prefix > bits:
        family_name = "IPv4" if bits == _V4_BITS else "IPv6"
        raise invalid(f"prefix length {prefix_text} is out of range for {family_name} (0-{bits})")
    network = value & _mask(bits, prefix)
    family, network = _canonical(bits, network)
    if family != bits:
        # A mapped network (::ffff:a.b.c.d/N, N >= 96) is the IPv4 network a.b.c.d/(N-96),
        # as Go's IPNet.Contains does it; shorter prefixes stay pure IPv6 and never reach IPv4.
        prefix -= _V6_BITS - _V4_BITS
    return family, network, _mask(family, prefix)


class IPChecker:
    """Answers whether a peer address lies in a list of IPs and CIDR networks."""

    __slots__ = ("_answers", "_authorized", "_v4", "_v6", "entries")

    def __init__(self, entries: Sequence[str]) -> None:
        if isinstance(entries, str):
            raise TypeError("IPChecker takes a sequence of IPs or CIDRs, not a single string")
        if not entries:
            raise ValueError("no trusted IPs provided: give at least one IP or CIDR")
        by_family: dict[int, dict[int, set[int]]] = {_V4_BITS: {}, _V6_BITS: {}}
        for entry in entries:
            family, network, mask = _parse_entry(entry)
            by_family[family].setdefault(mask, set()).add(network)
        self.entries: tuple[str, ...] = tuple(entries)
        # One hash lookup per distinct prefix length, whatever the number of entries;
        # single IPs are simply full-length prefixes.
        self._v4 = tuple((mask, frozenset(nets)) for mask, nets in by_family[_V4_BITS].items())
        self._v6 = tuple((mask, frozenset(nets)) for mask, nets in by_family[_V6_BITS].items())
        # The same clients come back connection after connection, request after request: the
        # answer for an address never changes, so it is kept (bounded, dropped when full), by
        # the text asked about: a bare host, or (authorizes) an address that may carry a port.
        self._answers: dict[str, bool] = {}
        self._authorized: dict[str, bool] = {}

    def contains(self, ip: str) -> bool:
        """Whether the bare host ``ip`` (a zone like ``%eth0`` is ignored) is listed."""
        answer = self._answers.get(ip)
        if answer is None:
            answer = _remember(self._answers, ip, self._lookup(ip))
        return answer

    def authorizes(self, address: str) -> bool:
        """Traefik's ``IsAuthorized``: whether the host of ``address`` is listed, ``address``
        being ``host:port``, ``[host]:port`` or a bare host (see split_host)."""
        answer = self._authorized.get(address)
        if answer is None:
            answer = _remember(self._authorized, address, self._lookup(split_host(address)))
        return answer

    def _lookup(self, ip: str) -> bool:
        if ":" in ip:
            zone = ip.find("%")
            if zone == len(ip) - 1:
                return False  # Go refuses an empty zone
            if zone >= 0:
                ip = ip[:zone]
        parsed = _parse_ip(ip)
        if parsed is None:
            return False
        family, value = _canonical(*parsed)
        for mask, networks in self._v4 if family == _V4_BITS else self._v6:
            if (value & mask) in networks:
                return True
        return False

    def __repr__(self) -> str:
        return f"IPChecker({list(self.entries)!r})"


def _remember(answers: dict[str, bool], address: str, answer: bool) -> bool:
    if len(answers) >= _ANSWERS_KEPT:
        answers.clear()
    answers[address] = answer
    return answer


def split_host(address: str) -> str:
    """The host of ``host:port`` or ``[host]:port`` as Go's net.SplitHostPort takes it apart;
    ``address`` itself when it does not split (a bare IP, most often)."""
    colon = address.rfind(":")
    if colon < 0:
        return address
    if address[:1] == "[":
        close = address.find("]")
        if close < 0 or close + 1 != colon:
            return address
        host, after_host = address[1:close], close + 1
        tail_from = 1
    else:
        host = address[:colon]
        if ":" in host:
            return address  # a bare IPv6 address
        after_host = tail_from = 0
    if "[" in address[tail_from:] or "]" in address[after_host:]:
        return address
    return host
