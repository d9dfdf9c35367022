"""The mypyc build (setup.py) against the pure-Python sources: the same answers on random input.

Each module setup.py compiles is loaded a second time from its ``.py`` file, along with the
other listed modules it imports, so that one pure chain sits beside the compiled one, and
both are fed the same ClientHello bytes, PROXY headers, preambles, rules and addresses.
Skipped unless this interpreter imports a compiled build (`make test-compiled`, or
`make compiled`); with SWITCHYARD_COMPILED_RUN=1 a listed module left uncompiled fails.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.compiled import compiled_modules
from switchyard.proxy.proxyproto import build_v1, build_v2
from switchyard.rules import ConnMeta
from tests.fuzz import test_clienthello_fuzz as hello_fuzz
from tests.fuzz import test_proxyproto_fuzz as proxy_fuzz
from tests.fuzz import test_rule_parser_fuzz as rule_fuzz

SETUP = Path(__file__).resolve().parents[2] / "setup.py"


def listed_modules() -> list[str]:
    """setup.py's COMPILED as module names, read without running setup.py."""
    for node in ast.parse(SETUP.read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COMPILED":
            return [path.removesuffix(".py").replace("/", ".")
                    for path in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no COMPILED list")


LISTED = listed_modules()
MISSING = sorted(set(LISTED) - set(compiled_modules()))
if MISSING and os.environ.get("SWITCHYARD_COMPILED_RUN") != "1":
    pytest.skip("no compiled build in this interpreter (make test-compiled runs this "
                "against one; make compiled installs one)", allow_module_level=True)


class _SourceFirst:
    """A finder that loads the listed modules from their .py files, ignoring any extension."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name not in self.names:
            return None
        for entry in path or sys.path:
            source = Path(entry, name.rpartition(".")[2] + ".py")
            if source.exists():
                return importlib.util.spec_from_file_location(name, source)
        return None


def load_pure(names: Sequence[str]) -> dict[str, ModuleType]:
    """The modules `names` run from source, importing one another; sys.modules and the
    packages' attributes are left holding the compiled ones."""
    compiled = {name: importlib.import_module(name) for name in names}  # and all they import
    finder = _SourceFirst(names)
    for name in names:
        del sys.modules[name]
    sys.meta_path.insert(0, finder)
    try:
        return {name: importlib.import_module(name) for name in names}
    finally:
        sys.meta_path.remove(finder)
        sys.modules.update(compiled)
        for name, module in compiled.items():
            package, _, attribute = name.rpartition(".")
            setattr(sys.modules[package], attribute, module)


PURE = load_pure(LISTED)
COMPILED = {name: sys.modules[name] for name in LISTED}


def side(name: str) -> tuple[Any, Any]:
    """(pure, compiled) module ``switchyard.<name>``."""
    return PURE[f"switchyard.{name}"], COMPILED[f"switchyard.{name}"]


EQUAL = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def test_every_module_setup_py_lists_is_compiled() -> None:
    assert not MISSING, f"not compiled: {', '.join(MISSING)}"
    for name in LISTED:
        assert COMPILED[name].__file__.endswith(tuple(EXTENSION_SUFFIXES)), name
        assert PURE[name].__file__.endswith(".py"), name


def test_only_modules_setup_py_lists_are_compiled() -> None:
    # An extension left behind by a module taken off the list would still shadow its source.
    assert set(compiled_modules()) <= set(LISTED)


# -- ClientHello and the Postgres SSLRequest ----------------------------------------------


def hello_answer(result: Any) -> tuple[object, ...]:
    hello = result.hello
    fields = None if hello is None else (hello.sni, hello.alpn, hello.versions, hello.sslv2,
                                         hello.record_bytes)
    return result.kind.value, result.reason, fields


# Server names in any case, with Go's whitespace around them and bytes that are not UTF-8,
# which the SNI's trimming and lower-casing must treat alike on both sides.
server_names = (st.text(alphabet="abXY.-\t \xa0\u2000é", max_size=12).map(str.encode)
                | st.binary(max_size=12))
hello_messages = st.builds(hello_fuzz.hello_message, st.none() | server_names,
                           hello_fuzz.protocols, hello_fuzz.versions, hello_fuzz.unknown_extensions)
built_hellos = hello_fuzz.valid_hellos | st.builds(hello_fuzz.frame, hello_messages,
                                                   hello_fuzz.record_sizes)


@st.composite
def odd_framings(draw: st.DrawFn) -> bytes:
    """A hello in records whose headers are now and then wrong: type, version, emptiness."""
    message = draw(hello_messages)
    sizes = draw(st.lists(st.integers(0, 60), min_size=1, max_size=6))
    records, pos = b"", 0
    for size in [*sizes, len(message)]:  # the rest in the last one
        chunk = message[pos:pos + size]
        pos += len(chunk)
        kind = draw(st.sampled_from([0x16] * 6 + [0x14, 0x15, 0x17]))
        major = draw(st.sampled_from([3] * 6 + [2, 4]))
        records += bytes([kind, major, 1]) + len(chunk).to_bytes(2, "big") + chunk
    return records


hellos = st.one_of(hello_fuzz.anything, built_hellos, odd_framings(), odd_framings())


@EQUAL
@given(hellos, st.lists(st.integers(0, 600), max_size=6))
def test_client_hello_reader_answers_as_its_source(data: bytes, cuts: list[int]) -> None:
    pure, compiled = side("tls.clienthello")
    assert hello_answer(compiled.read_client_hello(data)) == hello_answer(
        pure.read_client_hello(data))
    readers = pure.ClientHelloReader(), compiled.ClientHelloReader()
    start = 0
    for end in [*sorted(cut for cut in cuts if cut < len(data)), len(data)]:
        chunk, start = data[start:end], end
        slow, fast = (hello_answer(reader.feed(chunk)) for reader in readers)
        assert fast == slow
        assert readers[1].done == readers[0].done


@EQUAL
@given(st.binary(max_size=12) | st.integers(0, 8).map(
    lambda cut: side("tls.postgres")[1].SSL_REQUEST[:cut]))
def test_ssl_request_detector_answers_as_its_source(data: bytes) -> None:
    pure, compiled = side("tls.postgres")
    assert compiled.detect_ssl_request(data) == pure.detect_ssl_request(data)


# -- PROXY protocol -----------------------------------------------------------------------


def proxy_answer(result: Any) -> tuple[object, ...]:
    header = result.header
    fields = None if header is None else (header.version, header.command, header.source,
                                          header.destination, header.length, header.tlvs)
    return result.kind.value, result.reason, fields


def outcome(call: Callable[[], object]) -> object:
    """What a call gives, or its exception's type name and message."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the two sides must fail the same way too
        return type(exc).__name__, str(exc)


hosts = (proxy_fuzz.ipv4 | proxy_fuzz.ipv6
         | st.sampled_from(["::ffff:10.0.0.1", "fe80::1%eth0", "localhost", "", "10.0.0.256"]))
endpoints = st.tuples(hosts, st.sampled_from([-1, 65536, 0, 65535]) | proxy_fuzz.ports)


# v1 lines from their fields: mostly well-formed, with ports on both sides of 65535.
v1_ports = (st.integers(0, 65535) | st.integers(65536, 99999)).map(str) | st.sampled_from(
    ["01", "-1", "+1", "", "٣", "655350"])
v1_odd_hosts = st.sampled_from(["010.0.0.1", "1.2.3", "fe80::1%eth0", "::ffff:1.2.3.4", "", "a"])


def v1_line(protocol: str, source: str, destination: str, ports: tuple[str, str],
            end: str) -> bytes:
    return f"PROXY {protocol} {source} {destination} {ports[0]} {ports[1]}{end}".encode()


v1_lines = st.one_of(
    st.builds(v1_line, st.just("TCP4"), proxy_fuzz.ipv4, proxy_fuzz.ipv4,
              st.tuples(v1_ports, v1_ports), st.just("\r\n")),
    st.builds(v1_line, st.just("TCP6"), proxy_fuzz.ipv6, proxy_fuzz.ipv6,
              st.tuples(v1_ports, v1_ports), st.just("\r\n")),
    st.builds(v1_line, st.sampled_from(["TCP4", "TCP6", "UNKNOWN", "TCP5", "tcp4", " TCP4"]),
              proxy_fuzz.ipv4 | proxy_fuzz.ipv6 | v1_odd_hosts,
              proxy_fuzz.ipv4 | proxy_fuzz.ipv6 | v1_odd_hosts, st.tuples(v1_ports, v1_ports),
              st.sampled_from(["\r\n", "\n", "", " \r\n"])))


@EQUAL
@given(st.one_of(proxy_fuzz.anything, v1_lines, v1_lines), st.integers(0, 400))
def test_proxy_header_reader_answers_as_its_source(data: bytes, cut: int) -> None:
    pure, compiled = side("proxy.proxyproto")
    for prefix in (data, data[:cut]):
        assert proxy_answer(compiled.read_proxy_header(prefix)) == proxy_answer(
            pure.read_proxy_header(prefix))


@EQUAL
@given(endpoints, endpoints, st.binary(max_size=20), st.binary(max_size=30))
def test_proxy_header_writers_and_reader_agree_with_their_source(
        source: tuple[str, int], destination: tuple[str, int], tlv_value: bytes,
        payload: bytes) -> None:
    pure, compiled = side("proxy.proxyproto")
    for build in ("build_v1", "build_v2"):
        slow = outcome(partial(getattr(pure, build), source, destination))
        fast = outcome(partial(getattr(compiled, build), source, destination))
        assert fast == slow
        if isinstance(fast, bytes):
            assert proxy_answer(compiled.read_proxy_header(fast + payload)) == proxy_answer(
                pure.read_proxy_header(fast + payload))
    assert outcome(lambda: compiled.ssl_tlv("TLSv1.3", client_cert=bool(payload))) == outcome(
        lambda: pure.ssl_tlv("TLSv1.3", client_cert=bool(payload)))
    assert compiled.tlv(0xE0, tlv_value) == pure.tlv(0xE0, tlv_value)


# -- the preamble: PROXY header, SSLRequest, ClientHello as a connection feeds them ------


def event_answer(event: Any) -> tuple[object, ...]:
    kind = type(event).__name__
    if kind == "Reply":
        return kind, event.data
    if kind == "Peeked":
        meta = event.meta
        hello = event.hello
        return (kind, (meta.sni, meta.alpn, meta.client_ip, meta.tls), event.data,
                None if hello is None else (hello.sni, hello.alpn, hello.versions),
                event.postgres, event.smtp)
    if kind == "Refused":
        return kind, event.reason, event.detail
    return (kind,)  # NeedMore, Addressed


def feed_events(preamble: Any, data: bytes, cuts: list[int]) -> Iterator[tuple[object, ...]]:
    """Feed ``data`` in pieces as a connection does (b"" after Reply and Addressed)."""
    start = 0
    for end in [*sorted(cut for cut in cuts if cut < len(data)), len(data)]:
        event = preamble.feed(data[start:end])
        start = end
        yield event_answer(event)
        while type(event).__name__ in ("Reply", "Addressed"):
            event = preamble.feed(b"")
            yield event_answer(event)
        if type(event).__name__ in ("Peeked", "Refused"):
            return


ssl_request = side("tls.postgres")[1].SSL_REQUEST
proxy_headers = st.just(b"") | proxy_fuzz.anything | st.builds(
    lambda pair, v2: (build_v2 if v2 else build_v1)(*pair), proxy_fuzz.same_family, st.booleans())
preamble_inputs = st.builds(lambda *parts: b"".join(parts), proxy_headers,
                            st.sampled_from([b"", ssl_request]), hellos)


@EQUAL
@given(preamble_inputs, st.lists(st.integers(0, 900), max_size=5),
       st.sampled_from([None, True, False]))
def test_preamble_gives_the_events_of_its_source(data: bytes, cuts: list[int],
                                                 trusted: bool | None) -> None:
    pure, compiled = side("proxy.preamble")
    slow = pure.Preamble(("192.0.2.10", 40000), trusted)
    fast = compiled.Preamble(("192.0.2.10", 40000), trusted)
    assert list(feed_events(fast, data, cuts)) == list(feed_events(slow, data, cuts))
    assert (fast.client, fast.local, fast.buffered) == (slow.client, slow.local, slow.buffered)


# -- IP lists -----------------------------------------------------------------------------

ip_entries = (st.sampled_from(["10.0.0.0/8", "192.0.2.1", "::1", "2001:db8::/32", "0.0.0.0/0",
                               "::ffff:10.0.0.0/104", "::/0", "10.0.0.0/33", "010.0.0.1",
                               "fe80::1%eth0", ""])
              | proxy_fuzz.ipv4.map(lambda ip: f"{ip}/{int(ip.split('.')[0]) % 33}")
              | proxy_fuzz.ipv6 | st.text(max_size=8))
peers = (proxy_fuzz.ipv4 | proxy_fuzz.ipv6 | st.sampled_from(
    ["10.1.2.3", "::ffff:10.1.2.3", "fe80::1%eth0", "192.0.2.1", "::1", "not-an-ip", ""])
    | st.text(max_size=8))


@EQUAL
@given(st.lists(ip_entries, max_size=4), st.lists(peers, min_size=1, max_size=6))
def test_ip_checker_answers_as_its_source(entries: list[str], addresses: list[str]) -> None:
    pure, compiled = side("ipcheck")
    assert outcome(lambda: compiled.IPChecker(entries).entries) == outcome(
        lambda: pure.IPChecker(entries).entries)
    try:
        slow, fast = pure.IPChecker(entries), compiled.IPChecker(entries)
    except ValueError:
        return
    for address in addresses * 2:  # the second pass answers from the checkers' memory
        assert fast.contains(address) == slow.contains(address), address


# -- rules and the routing table ----------------------------------------------------------


def rule_answer(rules: Any, text: str, syntax: str) -> object:
    def parse() -> tuple[object, ...]:
        rule = rules.parse_rule(text, syntax)
        return (rule.text, rule.syntax, rule.is_catch_all, rule.exact_hosts,
                rule.host_sni_values, rule.sni_regexp)
    return outcome(parse)


@EQUAL
@given(rule_fuzz.rule_text, st.sampled_from(["v3", "v2", ""]))
def test_rule_parser_answers_as_its_source(text: str, syntax: str) -> None:
    pure, compiled = side("rules.rule")
    pure_priority, compiled_priority = side("rules.priority")
    assert rule_answer(compiled, text, syntax) == rule_answer(pure, text, syntax)
    assert outcome(lambda: compiled.host_sni_values(text)) == outcome(
        lambda: pure.host_sni_values(text))
    assert compiled_priority.default_priority(text) == pure_priority.default_priority(text)


@EQUAL
@given(rule_fuzz.rule_like | rule_fuzz.host_alternatives, st.sampled_from(["v3", "v2"]),
       st.lists(rule_fuzz.connections, min_size=1, max_size=6))
def test_a_rule_matches_the_connections_its_source_matches(
        text: str, syntax: str, metas: list[ConnMeta]) -> None:
    pure, compiled = side("rules.rule")
    try:
        slow, fast = pure.parse_rule(text, syntax), compiled.parse_rule(text, syntax)
    except Exception:  # noqa: BLE001 - whether it parses is the parser test's business
        return
    for meta in metas:
        assert fast.matches(meta) == slow.matches(meta), meta


@dataclass(frozen=True)
class Candidate:
    """What a RouteList needs of a route (its Ranked protocol), and a name to compare by."""

    name: str
    rule: Any
    rank: int


router_rules = (rule_fuzz.host_alternatives | rule_fuzz.rule_like | st.sampled_from(
    ["HostSNI(`*`)", "HostSNIRegexp(`^a\\.example\\.com$`)", "HostSNIRegexp(`example`)",
     "ClientIP(`10.0.0.0/8`)", "ALPN(`h2`)", "HostSNI(`*.example.com`)"]))


@EQUAL
@given(st.lists(router_rules, min_size=1, max_size=8),
       st.lists(rule_fuzz.connections, min_size=1, max_size=6))
def test_a_routing_table_picks_the_route_its_source_picks(
        texts: list[str], metas: list[ConnMeta]) -> None:
    (pure_rules, compiled_rules), (pure, compiled) = side("rules.rule"), side("routing.table")

    def route_list(table: Any, rules: Any) -> Any:
        routes = []
        for rank, text in enumerate(texts):
            try:
                routes.append(Candidate(f"r{rank}", rules.parse_rule(text), rank))
            except Exception:  # noqa: BLE001, S112 - an invalid rule is not installed
                continue
        return table.RouteList(routes)

    slow, fast = route_list(pure, pure_rules), route_list(compiled, compiled_rules)
    for meta in metas:
        found_slow, found_fast = slow.match(meta), fast.match(meta)
        assert (found_fast and found_fast.name) == (found_slow and found_slow.name), meta
