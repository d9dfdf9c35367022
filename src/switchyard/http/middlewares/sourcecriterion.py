"""Which client a request comes from: Traefik's `ipStrategy` and `sourceCriterion` options.

An ``ipStrategy`` picks one address: the connection's peer by default, the ``depth``-th entry
of ``X-Forwarded-For`` counted from the right, or the right-most entry not in ``excludedIPs``
(``depth`` wins when both are set). ``ipv6Subnet`` folds IPv6 addresses onto the first address
of their subnet (for the peer and ``depth`` strategies only, as in Traefik). A
``sourceCriterion`` (inFlightReq, rateLimit) groups requests by one of: an ``ipStrategy``, the
value of a request header, or the request host; the key it yields may be empty, which is a
group of its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.middlewares.base import MiddlewareError
from switchyard.ipcheck import IPChecker

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import RequestHead

__all__ = [
    "IPStrategyOptions",
    "SourceCriterionOptions",
    "SourceExtractor",
    "ip_strategy",
    "ipv6_subnet_address",
    "request_host",
    "source_extractor",
]

#: The key a request is grouped under (or, for ipAllowList, the address it is checked with).
SourceExtractor = Callable[["Exchange"], str]

_XFF = b"x-forwarded-for"


class IPStrategyOptions(TraefikModel):
    depth: int = 0
    excluded_ips: StrList = Field(default_factory=list, alias="excludedIPs")
    ipv6_subnet: int | None = Field(default=None, alias="ipv6Subnet")


class SourceCriterionOptions(TraefikModel):
    ip_strategy: IPStrategyOptions | None = Field(default=None, alias="ipStrategy")
    request_header_name: str = ""
    request_host: bool = False

    @property
    def is_empty(self) -> bool:
        return self.ip_strategy is None and not self.request_header_name and not self.request_host


def ip_strategy(options: IPStrategyOptions | None, where: str = "ipStrategy") -> SourceExtractor:
    """The address picker ``options`` describe (None: the connection's peer)."""
    if options is None:
        return _peer
    subnet = options.ipv6_subnet
    if options.depth > 0:
        _check_subnet(subnet, where)
        return _depth(options.depth, subnet)
    if options.excluded_ips:
        try:
            checker = IPChecker(options.excluded_ips)
        except ValueError as exc:
            raise MiddlewareError(f"{where}.excludedIPs: {exc}") from None
        return _first_not_excluded(checker)
    _check_subnet(subnet, where)
    return _peer if subnet is None else _peer_subnet(subnet)


def source_extractor(options: SourceCriterionOptions | None, *,
                     default: SourceCriterionOptions) -> SourceExtractor:
    """The grouping key of a ``sourceCriterion``; ``default`` stands in when none is set."""
    if options is not None:
        _check_exclusive(options)
    if options is None or options.is_empty:
        options = default
    if options.ip_strategy is not None:
        return ip_strategy(options.ip_strategy, "sourceCriterion.ipStrategy")
    if options.request_header_name:
        return _header(options.request_header_name.lower().encode("latin-1"))
    return lambda exchange: request_host(exchange.request)


def request_host(request: RequestHead) -> str:
    """Go's ``req.Host``: the authority of an absolute-form target, else the Host field."""
    target = request.target
    if target[:1] != b"/" and b"://" in target[:10]:
        authority = target.partition(b"://")[2]
        for stop in (b"/", b"?"):
            authority = authority.partition(stop)[0]
        if authority:
            return authority.decode("latin-1")
    return request.host


def _check_exclusive(options: SourceCriterionOptions) -> None:
    ip, header, host = (options.ip_strategy is not None, bool(options.request_header_name),
                        options.request_host)
    if ip + header + host > 1:
        chosen = [name for name, on in (("ipStrategy", ip), ("requestHeaderName", header),
                                         ("requestHost", host)) if on]
        raise MiddlewareError(
            f"sourceCriterion: {' and '.join(chosen)} are mutually exclusive; keep only one "
            "way of grouping requests")


def _check_subnet(subnet: int | None, where: str) -> None:
    if subnet is not None and not 0 < subnet <= 128:
        raise MiddlewareError(f"{where}.ipv6Subnet: invalid IPv6 subnet {subnet}; give a prefix "
                              "length from 1 to 128")


def _peer(exchange: Exchange) -> str:
    return exchange.info.client_ip


def _peer_subnet(bits: int) -> SourceExtractor:
    return lambda exchange: ipv6_subnet_address(exchange.info.client_ip, bits)


def _depth(depth: int, subnet: int | None) -> SourceExtractor:
    def pick(exchange: Exchange) -> str:
        # Go's Header.Get: the first field only (the entry point joined them into one already).
        value = exchange.request.headers.get(_XFF) or b""
        entries = value.split(b",")
        if len(entries) < depth:
            return ""
        address = entries[-depth].strip().decode("latin-1")
        return address if subnet is None else ipv6_subnet_address(address, subnet)
    return pick


def _first_not_excluded(checker: IPChecker) -> SourceExtractor:
    def pick(exchange: Exchange) -> str:
        value = exchange.request.headers.get(_XFF) or b""
        for entry in reversed(value.split(b",")):
            address = entry.strip().decode("latin-1")
            # An entry that is not an address is not excluded either, so it is the one.
            if address and not checker.contains(address):
                return address
        return ""
    return pick


def _header(name: bytes) -> SourceExtractor:
    if name == b"host":
        # Go's server moves Host out of the header map: Header.Get("Host") is always empty.
        return lambda exchange: ""

    def pick(exchange: Exchange) -> str:
        value = exchange.request.headers.get(name)
        return "" if value is None else value.decode("latin-1")
    return pick


def ipv6_subnet_address(address: str, bits: int) -> str:
    """The first address of the ``/bits`` subnet an IPv6 ``address`` lies in, as Go writes it;
    anything else (IPv4, not an address) comes back unchanged."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version != 6:
        return address
    masked = ipaddress.IPv6Address((int(parsed) >> (128 - bits)) << (128 - bits))
    mapped = masked.ipv4_mapped
    # Go writes an IPv4-mapped address with a dotted tail; a zone is dropped with the host bits.
    return f"::ffff:{mapped}" if mapped is not None else str(masked)
