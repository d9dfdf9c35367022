"""Leaf matchers: validate a matcher's arguments and build its test on connection metadata."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

from switchyard.ipcheck import IPChecker
from switchyard.rules.errors import RuleError
from switchyard.rules.goregexp import OPTIONS, GoRegexp
from switchyard.rules.gorilla import template_regexp
from switchyard.rules.parser import MatcherCall


@dataclass(frozen=True, slots=True)
class ConnMeta:
    """What rules see of a connection (Traefik's ConnData).

    ``sni`` is None or "" when the client sent none (non-TLS); from a real ClientHello it is
    already lower-cased. ``alpn`` is what the client offered, empty for non-TLS.
    """

    sni: str | None
    alpn: tuple[str, ...]
    client_ip: str
    tls: bool


Predicate = Callable[[ConnMeta], bool]
# A compiled regexp's search: a match object or None.
Search = Callable[[bytes], object]

ACME_TLS_ALPN = "acme-tls/1"

_HOST_V3 = re.compile(r"(?:\*\.)?[A-Za-z0-9_.\-:]+")
_HOST_V2 = re.compile(r"[A-Za-z0-9_.\-:]+")



class _Invalid(Exception):
    """A bad matcher argument; ``index`` says which, for the error position."""

    def __init__(self, problem: str, index: int = 0) -> None:
        super().__init__(problem)
        self.problem = problem
        self.index = index


def build_matcher(call: MatcherCall, rule: str, v2: bool) -> Predicate:
    """Validate ``call`` for the v2 or v3 syntax and return its test (negation not applied)."""
    name = call.name
    try:
        if not call.args:
            raise _Invalid(f"no args for matcher {name}: give it a value, e.g. {name}(`...`)")
        for index, arg in enumerate(call.args):
            if arg == "":
                raise _Invalid(f"empty args for matcher {name}", index)
        if v2:
            return _V2_BUILDERS[name](call.args)
        if len(call.args) != 1:
            raise _Invalid(
                f"{name} takes exactly one argument, got {len(call.args)}; "
                f"combine values with ||, e.g. {name}(`a`) || {name}(`b`)",
                1,
            )
        return _V3_BUILDERS[name](call.args[0])
    except _Invalid as invalid:
        offset = call.arg_offsets[invalid.index] if call.args else call.offset
        raise RuleError(rule, offset, invalid.problem) from None


def _always(meta: ConnMeta) -> bool:
    return True


def _never(meta: ConnMeta) -> bool:
    return False


def _host_sni(host: str) -> Predicate:
    if host == "*":
        # The catch-all also matches connections without SNI (plain TCP).
        return _always
    if not host.isascii():
        raise _Invalid(f"invalid value for HostSNI: `{host}` is not ASCII; {_punycode_hint(host)}")
    if _HOST_V3.fullmatch(host) is None:
        raise _Invalid(
            f"invalid value for HostSNI: `{host}` is not a valid host name (letters, digits, "
            "'_', '.', '-' and ':', optionally after a leading '*.'; or '*' alone)"
        )
    # One trailing dot of the rule value is dropped; the SNI's is not.
    host = host.removesuffix(".").lower()
    if host.startswith("*."):
        return _wildcard_host(host[1:])
    if not host:
        return _never  # the value was ".", and an empty SNI never matches a host
    return _exact_host(host)


def _exact_host(host: str) -> Predicate:
    def host_sni(meta: ConnMeta) -> bool:
        sni = meta.sni
        # A ClientHello SNI is already lower-case, so the plain comparison usually decides.
        return sni == host or (sni is not None and sni.lower() == host)

    return host_sni


def _wildcard_host(suffix: str) -> Predicate:
    """``*.example.com``: the SNI with its first label replaced by ``*`` must equal it."""

    def host_sni_wildcard(meta: ConnMeta) -> bool:
        sni = meta.sni
        if not sni:
            return False
        dot = sni.find(".")
        return dot >= 0 and sni[dot:].lower() == suffix

    return host_sni_wildcard


def _host_sni_regexp(pattern: str) -> Predicate:
    if not pattern.isascii():
        raise _Invalid(f"invalid value for HostSNIRegexp: `{pattern}` is not ASCII")
    return _regexp_search([_compile_regexp(pattern, pattern, 0)])


def _client_ip(values: Sequence[str]) -> Predicate:
    try:
        contains = IPChecker(values).contains
    except ValueError as exc:
        bad = next(i for i, value in enumerate(values) if not _valid_ip_entry(value))
        raise _Invalid(f"invalid value for ClientIP: {exc}", bad) from None

    def client_ip(meta: ConnMeta) -> bool:
        return contains(meta.client_ip)

    return client_ip


def _valid_ip_entry(value: str) -> bool:
    try:
        IPChecker([value])
    except ValueError:
        return False
    return True


def _alpn(protocols: Sequence[str]) -> Predicate:
    for index, protocol in enumerate(protocols):
        # Case-sensitive on purpose, like Traefik: ACME-TLS/1 is an ordinary protocol name.
        if protocol == ACME_TLS_ALPN:
            raise _Invalid(
                f"invalid value for ALPN: `{ACME_TLS_ALPN}` is reserved for ACME TLS-ALPN-01 "
                "challenges and cannot be routed",
                index,
            )
    if len(protocols) == 1:
        (protocol,) = protocols

        def alpn(meta: ConnMeta) -> bool:
            return protocol in meta.alpn

        return alpn
    wanted = frozenset(protocols)

    def alpn_any(meta: ConnMeta) -> bool:
        return not wanted.isdisjoint(meta.alpn)

    return alpn_any


def _host_sni_v2(hosts: Sequence[str]) -> Predicate:
    names: set[str] = set()
    for index, host in enumerate(hosts):
        if host == "*":
            names.add(host)
            continue
        if _HOST_V2.fullmatch(host) is None:
            if host.startswith("*."):
                reason = "wildcard subdomains need ruleSyntax v3"
            elif not host.isascii():
                reason = f"it is not ASCII; {_punycode_hint(host)}"
            else:
                reason = "allowed are letters, digits, '_', '.', '-' and ':', or '*' alone"
            raise _Invalid(f"invalid value for HostSNI: `{host}`: {reason}", index)
        lowered = host.lower()
        # v2 compares the SNI exactly, then again without the value's trailing dot.
        names.update((lowered, lowered.removesuffix(".")))
    if hosts[0] == "*":
        return _always
    if "*" in names:
        # A '*' after the first value only matches connections that have an SNI.
        def host_sni_v2_any(meta: ConnMeta) -> bool:
            return bool(meta.sni)

        return host_sni_v2_any

    # Without "" in the set, a missing or empty SNI never matches, as in Traefik.
    names.discard("")

    def host_sni_v2(meta: ConnMeta) -> bool:
        return meta.sni in names

    return host_sni_v2


def _host_sni_regexp_v2(templates: Sequence[str]) -> Predicate:
    compiled = []
    for index, template in enumerate(templates):
        try:
            pattern = template_regexp(template, default="[^.]+", host=True).pattern
        except ValueError as exc:
            raise _Invalid(f"invalid value for HostSNIRegexp: {exc}", index) from None
        compiled.append(_compile_regexp(pattern, template, index))
    return _regexp_search(tuple(compiled))


def _compile_regexp(pattern: str, shown: str, index: int) -> Search:
    try:
        return compile_go_regexp(pattern)
    except ValueError as exc:
        raise _Invalid(f"invalid value for HostSNIRegexp: `{shown}`: {exc}", index) from None


def compile_go_regexp(pattern: str) -> Search:
    """``pattern`` compiled with Go's regexp syntax (RE2); its unanchored search over bytes.

    ValueError says why the pattern is refused. Bytes in, bytes matched: SNIs and request
    fields may carry surrogate escapes that UTF-8 cannot encode.
    """
    search: Search = GoRegexp(pattern).search
    return search


def regexp_set(patterns: Sequence[str]) -> Any:
    """An RE2 set searching (unanchored) for all ``patterns`` at once, with the options and
    encoding single HostSNIRegexp matchers use; ``.Match(sni_bytes)`` lists the hits."""
    found = re2.Set.SearchSet(OPTIONS)
    for pattern in patterns:
        found.Add(pattern.encode("utf-8", "surrogateescape"))
    found.Compile()
    return found


def _regexp_search(searches: Sequence[Search]) -> Predicate:
    if len(searches) == 1:
        (search,) = searches

        def host_sni_regexp(meta: ConnMeta) -> bool:
            # Unanchored, and run on the empty SNI too: `^$` matches plain TCP.
            return search((meta.sni or "").encode("utf-8", "surrogateescape")) is not None

        return host_sni_regexp

    def host_sni_regexp_any(meta: ConnMeta) -> bool:
        sni = (meta.sni or "").encode("utf-8", "surrogateescape")
        return any(search(sni) is not None for search in searches)

    return host_sni_regexp_any


def _punycode_hint(host: str) -> str:
    try:
        ascii_form = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_form = ""
    if _HOST_V3.fullmatch(ascii_form) is None:
        # Python's IDNA codec lets through what is no host name anyway (spaces, say).
        return "use the punycode (xn--) form of the name"
    return f"use the punycode form `{ascii_form}`"


def _single(build: Callable[[Sequence[str]], Predicate]) -> Callable[[str], Predicate]:
    def build_one(value: str) -> Predicate:
        return build((value,))

    return build_one


_V3_BUILDERS: dict[str, Callable[[str], Predicate]] = {
    "HostSNI": _host_sni,
    "HostSNIRegexp": _host_sni_regexp,
    "ClientIP": _single(_client_ip),
    "ALPN": _single(_alpn),
}
_V2_BUILDERS: dict[str, Callable[[Sequence[str]], Predicate]] = {
    "HostSNI": _host_sni_v2,
    "HostSNIRegexp": _host_sni_regexp_v2,
    "ClientIP": _client_ip,
    "ALPN": _alpn,
}
