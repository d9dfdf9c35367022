"""HTTP rules: Traefik's v3 and v2 HTTP matchers on the shared parser, domains, host index keys."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.rules import (
    Headers,
    RequestMeta,
    RuleError,
    default_http_priority,
    parse_domains,
    parse_http_rule,
)
from switchyard.rules.http import host_key
from switchyard.rules.request import entrypoint_path


def request(
    host: str = "example.com",
    target: str = "/",
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    client_ip: str = "192.0.2.1",
) -> RequestMeta:
    path, _, query = target.partition("?")
    return RequestMeta(host, entrypoint_path(path), method, Headers(headers), query, client_ip)


def matches(rule: str, meta: RequestMeta, syntax: str = "v3") -> bool:
    return parse_http_rule(rule, syntax).matches(meta)


def problem(rule: str, syntax: str = "v3") -> RuleError:
    with pytest.raises(RuleError) as caught:
        parse_http_rule(rule, syntax)
    return caught.value


# --- v3 matchers (each case checked against Traefik 3.7 on loopback) -------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("foo.example.com", True),
        ("FOO.Example.COM:80", True),
        ("a.b.example.com", False),  # the wildcard covers exactly one label
        ("example.com", False),
    ],
)
def test_wildcard_host_matches_one_extra_label(host: str, expected: bool) -> None:
    assert matches("Host(`*.example.com`)", request(host)) is expected


def test_host_star_matches_every_request_even_without_a_host() -> None:
    assert matches("Host(`*`)", request("anything"))
    assert matches("Host(`*`)", request(""))


@pytest.mark.parametrize("host", ["dot.example.org", "dot.example.org.", "DOT.example.org.:8080"])
def test_host_trailing_dots_are_ignored_on_either_side(host: str) -> None:
    assert matches("Host(`dot.example.org.`)", request(host))
    assert matches("Host(`dot.example.org`)", request(host))


def test_host_compares_case_insensitively_without_port() -> None:
    assert matches("Host(`Example.COM`)", request("example.com:8443"))
    assert not matches("Host(`example.com:8443`)", request("example.com:8443"))


def test_ipv6_host_is_matched_without_brackets() -> None:
    assert matches("Host(`::1`)", request("[::1]:8080"))
    assert matches("Host(`::1`)", request("[::1]"))
    assert not matches("Host(`[::1]`)", request("[::1]:8080"))


def test_a_request_without_host_matches_no_host_rule() -> None:
    assert not matches("Host(`example.com`)", request(""))
    assert not matches("!Host(`example.com`)", request("example.com"))
    assert matches("!Host(`example.com`)", request(""))


def test_host_regexp_is_unanchored_on_the_lower_cased_host() -> None:
    assert matches("HostRegexp(`^hre\\.test$`)", request("HRE.test:99"))
    assert not matches("HostRegexp(`HRE`)", request("HRE.test"))
    assert matches("HostRegexp(`(?i)HRE`)", request("hre.test"))
    assert matches("HostRegexp(`example`)", request("www.example.com"))


def test_host_regexp_matching_the_empty_string_matches_every_request() -> None:
    # Traefik also tries the (empty) CNAME-flattened host.
    assert matches("HostRegexp(`^$`)", request("x.y"))
    assert matches("HostRegexp(`a*`)", request("b.c"))


def test_path_is_exact_and_path_prefix_is_a_string_prefix() -> None:
    assert matches("Path(`/a/b`)", request(target="/a/b"))
    assert not matches("Path(`/a/b`)", request(target="/a/b/"))
    assert matches("PathPrefix(`/pfx`)", request(target="/pfxx"))
    assert matches("PathPrefix(`/pfx`)", request(target="/pfx%2F"))


def test_path_rules_see_decoded_unreserved_but_encoded_reserved_characters() -> None:
    assert matches("Path(`/foo bar`)", request(target="/foo%20bar"))
    assert matches("Path(`/~x`)", request(target="/%7ex"))
    assert matches("Path(`/a%2Fb`)", request(target="/a%2fb"))
    assert not matches("Path(`/a/b`)", request(target="/a%2Fb"))


def test_path_rules_see_the_sanitized_path() -> None:
    for target in ("/a/b/../c", "/a//c", "/a/./c", "/a/%2E%2E/a/c"):
        assert matches("Path(`/a/c`)", request(target=target)), target


def test_path_regexp_is_unanchored() -> None:
    assert matches("PathRegexp(`^/api/v[0-9]+/`)", request(target="/api/v2/users"))
    assert matches("PathRegexp(`users`)", request(target="/api/v2/users"))
    assert not matches("PathRegexp(`^/users`)", request(target="/api/v2/users"))


def test_method_is_upper_cased_in_the_rule_but_compared_as_sent() -> None:
    assert matches("Method(`get`)", request(method="GET"))
    assert not matches("Method(`GET`)", request(method="get"))


def test_header_matches_any_value_of_the_canonical_name_exactly() -> None:
    meta = request(headers=[("X-MY-HEADER", "V"), ("x-my-header", "W")])
    assert matches("Header(`x-my-header`, `V`)", meta)
    assert matches("Header(`X-My-Header`, `W`)", meta)
    assert not matches("Header(`x-my-header`, `v`)", meta)
    assert matches("Header(`x_a`, `1`)", request(headers=[("X_A", "1")]))


def test_header_host_and_non_token_names_never_match() -> None:
    meta = request("hh.test", headers=[("Host", "hh.test"), ("x y", "1")])
    assert not matches("Header(`Host`, `hh.test`)", meta)
    assert not matches("Header(`x y`, `1`)", meta)
    assert matches("!Header(`Host`, `hh.test`)", meta)


def test_header_regexp_searches_each_value() -> None:
    meta = request(headers=[("Accept", "text/html"), ("Accept", "application/json")])
    assert matches("HeaderRegexp(`accept`, `json$`)", meta)
    assert not matches("HeaderRegexp(`accept`, `^json`)", meta)
    assert not matches("HeaderRegexp(`missing`, `.*`)", meta)


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/?k", True), ("/?k=", True), ("/?k=v", False), ("/?k=v&k", True), ("/?j", False)],
)
def test_query_with_a_key_alone_needs_an_empty_value(target: str, expected: bool) -> None:
    assert matches("Query(`k`)", request(target=target)) is expected
    assert matches("QueryRegexp(`k`)", request(target=target)) is expected


def test_query_value_is_compared_decoded_against_every_value() -> None:
    assert matches("Query(`k`, `a b`)", request(target="/?k=a+b"))
    assert matches("Query(`k`, `a b`)", request(target="/?k=x&k=a%20b"))
    assert matches("QueryRegexp(`k`, `^[0-9]+$`)", request(target="/?k=x&k=42"))
    assert not matches("QueryRegexp(`k`, `^[0-9]+$`)", request(target="/?k=x"))


def test_client_ip_uses_the_address_as_seen() -> None:
    assert matches("ClientIP(`10.0.0.0/8`)", request(client_ip="10.1.2.3"))
    assert matches("ClientIP(`10.0.0.1`)", request(client_ip="::ffff:10.0.0.1"))
    assert not matches("ClientIP(`10.0.0.0/8`)", request(client_ip="192.0.2.1"))
    assert not matches("ClientIP(`10.0.0.0/8`)", request(client_ip=""))


def test_operators_and_spellings_are_those_of_the_tcp_language() -> None:
    meta = request("a.test", "/x", method="POST")
    assert matches("HOST(`a.test`) && (path(`/y`) || !METHOD(`get`))", meta)
    assert matches('Host("a\\x2etest")', meta)
    assert not matches("Host(`a.test`) && !Method(`POST`)", meta)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("Host(`a`, `b`)", "Host takes exactly one argument, got 2"),
        ("Header(`X-A`)", "Header takes two arguments"),
        ("Query(`a`, `b`, `c`)", "Query takes a key and optionally a value, got 3"),
        ("Method()", "no args for matcher Method"),
        ("Path(``)", "empty args for matcher Path"),
        ("Path(`x`)", "does not start with a '/'"),
        ("PathPrefix(`x`)", "does not start with a '/'"),
        ("PathRegexp(`(`)", "invalid regexp `(` for PathRegexp"),
        ("HostRegexp(`a\\C`)", "\\C is not supported"),
        ("Host(`é.com`)", "non-ASCII characters are not allowed"),
        ("ClientIP(`10.0.0.300`)", "invalid value for ClientIP"),
        ("HeaderRegexp(`X`, `[`)", "invalid regexp `[` for HeaderRegexp"),
    ],
)
def test_invalid_matcher_arguments_are_reported(rule: str, message: str) -> None:
    assert message in problem(rule).problem


def test_the_error_points_at_the_faulty_argument() -> None:
    assert problem("Host(`a`, `b`)").column == len("Host(`a`, ") + 1
    assert problem("Host(`a`) && Path(`x`)").column == len("Host(`a`) && Path(") + 1


@pytest.mark.parametrize(
    ("rule", "hint"),
    [
        ("HostSNI(`a`)", "HostSNI is a TCP matcher"),
        ("Headers(`a`, `b`)", "Headers is a ruleSyntax v2 matcher"),
        ("HostHeader(`a`)", "HostHeader is a ruleSyntax v2 matcher"),
        ("hostRegexp(`a`)", "HostRegexp can only be spelled HostRegexp, hostregexp"),
        ("Foo(`a`)", "HTTP rules use Host, HostRegexp"),
    ],
)
def test_unknown_matchers_say_what_to_write(rule: str, hint: str) -> None:
    assert hint in problem(rule).problem


def test_only_exactly_v2_selects_the_v2_syntax() -> None:
    assert parse_http_rule("Path(`/x`)", "V2").syntax == "v3"
    assert parse_http_rule("Path(`/x`)", "v4").syntax == "v3"
    assert "Host takes exactly one argument" in problem("Host(`a`, `b`)", "V2").problem


# --- v2 matchers --------------------------------------------------------------------------


def test_v2_host_takes_several_values() -> None:
    rule = "Host(`a.v2`, `b.v2`)"
    assert matches(rule, request("B.v2:80"), "v2")
    assert not matches(rule, request("c.v2"), "v2")
    assert matches("HostHeader(`hh.v2`)", request("hh.v2"), "v2")


def test_v2_host_has_no_wildcards() -> None:
    assert not matches("Host(`*.example.com`)", request("a.example.com"), "v2")


def test_v2_host_regexp_is_an_anchored_case_insensitive_template() -> None:
    rule = "HostRegexp(`{sub:[a-z]+}.re.v2`)"
    assert matches(rule, request("ABC.re.v2"), "v2")
    assert not matches(rule, request("ab1.re.v2"), "v2")
    assert matches("HostRegexp(`v2hr.test`)", request("V2HR.test:80"), "v2")
    assert not matches("HostRegexp(`v2hr.test`)", request("v2hr.test."), "v2")
    assert matches("HostRegexp(`{any}.example.com`)", request("x.example.com"), "v2")


def test_v2_path_templates_are_anchored_and_prefixes_are_not() -> None:
    assert matches("Path(`/v2e/{id:[0-9]+}`)", request(target="/v2e/12"), "v2")
    assert not matches("Path(`/v2e/{id:[0-9]+}`)", request(target="/v2e/12/"), "v2")
    assert matches("PathPrefix(`/pp/{x}`)", request(target="/pp/a/b"), "v2")
    assert not matches("PathPrefix(`/pp/{x}`)", request(target="/pp/"), "v2")
    assert matches("Path(`/a`, `/b`)", request(target="/b"), "v2")
    assert not matches("Path(`/a.b`)", request(target="/aXb"), "v2")  # literal text is quoted


def test_v2_query_compares_key_equals_first_value() -> None:
    rule = "Query(`k=v`, `j=`)"
    assert matches(rule, request(target="/?k=v&j="), "v2")
    assert matches(rule, request(target="/?k=v&j=1"), "v2")  # `j=` accepts any value
    assert not matches(rule, request(target="/?k=v"), "v2")
    assert not matches(rule, request(target="/?k=w&k=v&j"), "v2")  # only the first k counts
    assert matches("Query(`page={n:[0-9]+}`)", request(target="/?page=12"), "v2")


def test_v2_headers_need_every_pair() -> None:
    rule = "Headers(`X-A`, `1`, `X-B`, `2`)"
    assert matches(rule, request(headers=[("x-a", "1"), ("x-b", "2")]), "v2")
    assert not matches(rule, request(headers=[("x-a", "1")]), "v2")
    regexp = "HeadersRegexp(`X-A`, `^[0-9]$`)"
    assert matches(regexp, request(headers=[("x-a", "x"), ("x-a", "7")]), "v2")
    assert not matches(regexp, request(), "v2")


def test_v2_methods_and_client_ips_take_several_values() -> None:
    assert matches("Method(`post`, `get`)", request(method="POST"), "v2")
    assert not matches("Method(`post`, `get`)", request(method="post"), "v2")
    assert matches("ClientIP(`10.0.0.1`, `192.0.2.0/24`)", request(client_ip="192.0.2.9"), "v2")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("Query(`k`)", "Query takes key=value arguments"),
        ("Headers(`X-A`)", "Headers takes name and value pairs"),
        ("Path(`v2h`)", "does not start with a '/'"),
        ("Path(`/{a`)", "unbalanced braces"),
        ("Path(`/{:x}`)", "missing name or pattern"),
        ("Path(`/{a:(}`)", "invalid regexp"),
        ("Path(`/{a:a)(b}`)", "invalid regexp `^a)(b$`"),
        ("Query(`a={x}`, `b={x}`)", "duplicated route variable 'x'"),
        ("Header(`X-A`, `1`)", "Header is a v3 matcher"),
        ("PathRegexp(`/x`)", "PathRegexp is a v3 matcher"),
    ],
)
def test_v2_errors(rule: str, message: str) -> None:
    assert message in problem(rule, "v2").problem


# --- domains, priority, host keys ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "domains"),
    [
        ("Host(`A.test`) && Path(`/x`)", ["a.test"]),
        ("!(!Host(`p1.test`))", ["p1.test"]),
        ("!(Host(`p2.test`) && Path(`/x`))", []),
        ("HOST(`P3.test`)", ["p3.test"]),
        ("Host(`p4.test`, `p4b.test`)", ["p4.test", "p4b.test"]),  # v2 spelling is read too
        ("HostHeader(`p5.test`)", []),
        ("Host(`a`) || (Host(`b`) && !Host(`c`))", ["a", "b"]),
        ("PathPrefix(`/`)", []),
        ("Host()", []),  # arguments are not validated
    ],
)
def test_domains_are_the_positive_host_values(rule: str, domains: list[str]) -> None:
    assert parse_domains(rule) == domains


def test_domains_of_an_unparsable_rule_raise() -> None:
    with pytest.raises(RuleError, match="unsupported function Bogus"):
        parse_domains("Host(`a`) && Bogus(`x`)")


def test_http_priority_is_the_rule_length_in_bytes() -> None:
    assert default_http_priority("Host(`*`)") == 9
    assert default_http_priority("Host(`*.*.example.net`)") == 23
    assert default_http_priority("Path(`/é`)") == 11
    assert default_http_priority("") == 0


@pytest.mark.parametrize(
    ("rule", "keys"),
    [
        ("Host(`A.test`)", {"a.test", "a.test."}),
        ("Host(`a.test.`)", {"a.test.", "a.test..", "a.test"}),
        ("Host(`a`) && Path(`/x`)", {"a", "a."}),
        ("Host(`a`) || Host(`b`)", {"a", "a.", "b", "b."}),
        ("Host(`a`) && (Host(`a`) || Host(`b`))", {"a", "a."}),
        ("Host(`a`) || Path(`/x`)", None),
        ("!Host(`a`)", None),
        ("Host(`*.a`)", None),
        ("Host(`*`)", None),
        ("Path(`/x`)", None),
    ],
)
def test_host_keys_bound_the_hosts_a_rule_can_match(rule: str, keys: set[str] | None) -> None:
    found = parse_http_rule(rule).host_keys
    assert found == (None if keys is None else frozenset(keys))


# --- properties -----------------------------------------------------------------------------

HOSTS = ["example.com", "Foo.Example.com", "a.b.example.com", "example.com.", "x", ""]
HOST_VALUES = ["example.com", "*.example.com", "foo.example.com", "example.com.", "*", "X", "*."]
HOST_REGEXPS = ["^foo", "example\\.com$", "^$", "b", "(?i)FOO", "[0-9]"]
PATHS = ["/", "/api", "/api/v1", "/api v1", "/~x", "/a/b/"]
PATH_VALUES = ["/", "/api", "/api/v1", "/api v1", "/a/b/", "/~x"]
PATH_REGEXPS = ["^/api", "v1$", "b/$", "^/$", " "]
METHODS = ["GET", "POST", "get"]
HEADER_NAMES = ["X-A", "x-a", "Accept", "Host"]
HEADER_VALUES = ["1", "text/html", "", "a b"]
QUERY_KEYS = ["k", "page", "a b"]
QUERY_VALUES = ["", "1", "v", "a b", "x&y"]
CLIENT_IPS = ["10.0.0.1", "192.0.2.7", "2001:db8::1"]
CLIENT_IP_VALUES = ["10.0.0.0/8", "10.0.0.1", "192.0.2.0/24", "2001:db8::/32", "::1"]


@dataclass(frozen=True)
class Leaf:
    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Not:
    operand: object


@dataclass(frozen=True)
class Pair:
    op: str  # "&&" or "||"
    left: object
    right: object


@dataclass(frozen=True)
class Req:
    host: str
    port: str
    path: str
    method: str
    headers: tuple[tuple[str, str], ...]
    query: tuple[tuple[str, str], ...]
    client_ip: str

    def meta(self) -> RequestMeta:
        host = f"{self.host}:{self.port}" if self.port else self.host
        path = urllib.parse.quote(self.path, safe="/")
        query = urllib.parse.urlencode(self.query)
        return RequestMeta(host, path, self.method, Headers(self.headers), query, self.client_ip)


def _leaf(name: str, *pools: list[str]) -> st.SearchStrategy[Leaf]:
    return st.tuples(*(st.sampled_from(pool) for pool in pools)).map(lambda a: Leaf(name, a))


LEAVES = st.one_of(
    _leaf("Host", HOST_VALUES),
    _leaf("HostRegexp", HOST_REGEXPS),
    _leaf("Path", PATH_VALUES),
    _leaf("PathPrefix", PATH_VALUES),
    _leaf("PathRegexp", PATH_REGEXPS),
    _leaf("Method", METHODS),
    _leaf("Header", HEADER_NAMES, [v for v in HEADER_VALUES if v]),
    _leaf("HeaderRegexp", HEADER_NAMES, ["^1$", "html", "^a"]),
    _leaf("Query", QUERY_KEYS),
    _leaf("Query", QUERY_KEYS, [v for v in QUERY_VALUES if v]),
    _leaf("QueryRegexp", QUERY_KEYS, ["^[0-9]+$", "a", "^$"]),
    _leaf("ClientIP", CLIENT_IP_VALUES),
)
TREES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        inner.map(Not),
        st.tuples(st.sampled_from(["&&", "||"]), inner, inner).map(lambda t: Pair(*t)),
    ),
    max_leaves=8,
)
REQUESTS = st.builds(
    Req,
    st.sampled_from(HOSTS),
    st.sampled_from(["", "8080"]),
    st.sampled_from(PATHS),
    st.sampled_from(METHODS),
    st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES)), max_size=3)
    .map(tuple),
    st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.sampled_from(QUERY_VALUES)), max_size=3)
    .map(tuple),
    st.sampled_from(CLIENT_IPS),
)


def render(node: object, draw: st.DrawFn) -> str:
    """Rule text for ``node``, with random spellings, quotes, spaces and extra parentheses."""
    if isinstance(node, Leaf):
        spelled = draw(st.sampled_from([node.name, node.name.lower(), node.name.upper()]))
        args = []
        for arg in node.args:
            if draw(st.booleans()):
                args.append(f"`{arg}`")
            else:
                args.append('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"')
        text = f"{spelled}({', '.join(args)})"
    elif isinstance(node, Not):
        text = f"!({render(node.operand, draw)})"
    else:
        assert isinstance(node, Pair)
        space = draw(st.sampled_from([" ", "", "  "]))
        text = f"({render(node.left, draw)}){space}{node.op}{space}({render(node.right, draw)})"
    return f"({text})" if draw(st.integers(0, 4)) == 0 else text


def reference(node: object, req: Req) -> bool:
    """Traefik's HTTP matchers, read off its Go source and written plainly."""
    if isinstance(node, Not):
        return not reference(node.operand, req)
    if isinstance(node, Pair):
        left = reference(node.left, req)
        return (left and reference(node.right, req)) if node.op == "&&" else (
            left or reference(node.right, req))
    assert isinstance(node, Leaf)
    host = req.host.lower()
    params: dict[str, list[str]] = {}
    for key, value in req.query:
        params.setdefault(key, []).append(value)
    name, args = node.name, node.args
    if name == "Host":
        expression = args[0].lower()
        if expression == "*":
            return True
        if not host:
            return False

        def domain_match(domain: str, expr: str) -> bool:
            if expr.startswith("*"):
                labels = domain.split(".")
                labels[0] = "*"
                domain = ".".join(labels)
            return domain == expr

        return (
            domain_match(host, expression)
            or (expression.endswith(".") and domain_match(host, expression[:-1]))
            or (host.endswith(".") and domain_match(host[:-1], expression))
        )
    if name == "HostRegexp":
        return bool(re.search(args[0], host) or re.search(args[0], ""))
    if name == "Path":
        return req.path == args[0]
    if name == "PathPrefix":
        return req.path.startswith(args[0])
    if name == "PathRegexp":
        return re.search(args[0], req.path) is not None
    if name == "Method":
        return req.method == args[0].upper()
    if name in ("Header", "HeaderRegexp"):
        if args[0].lower() == "host":
            return False
        values = [v for k, v in req.headers if k.lower() == args[0].lower()]
        if name == "Header":
            return args[1] in values
        return any(re.search(args[1], v) for v in values)
    if name == "Query":
        return (args[1] if len(args) == 2 else "") in params.get(args[0], [])
    if name == "QueryRegexp":
        return any(re.search(args[1], v) for v in params.get(args[0], []))
    assert name == "ClientIP"
    address = ipaddress.ip_address(req.client_ip)
    network = ipaddress.ip_network(args[0], strict=False)
    return address.version == network.version and address in network


def positive_hosts(node: object, negated: bool = False) -> list[str]:
    if isinstance(node, Not):
        return positive_hosts(node.operand, not negated)
    if isinstance(node, Pair):
        return positive_hosts(node.left, negated) + positive_hosts(node.right, negated)
    assert isinstance(node, Leaf)
    return [node.args[0].lower()] if node.name == "Host" and not negated else []


@settings(max_examples=400, deadline=None)
@given(TREES, st.lists(REQUESTS, min_size=1, max_size=5), st.data())
def test_compiled_rules_agree_with_a_plain_reading_of_traefik(
    tree: object, requests: list[Req], data: st.DataObject
) -> None:
    text = render(tree, data.draw)
    rule = parse_http_rule(text)
    for req in requests:
        meta = req.meta()
        assert rule.matches(meta) is reference(tree, req), (text, req)
        if rule.host_keys is not None and rule.matches(meta):
            assert host_key(meta) in rule.host_keys, (text, req)


@settings(max_examples=200, deadline=None)
@given(TREES, st.data())
def test_domains_are_the_hosts_left_positive_by_de_morgan(tree: object, data: st.DataObject) -> None:
    assert parse_domains(render(tree, data.draw)) == positive_hosts(tree)


RULE_ALPHABET = st.sampled_from(
    list("`\"'()!&|, \n\\{}=:/*.$^[]") + ["Host", "Path", "Query", "Header", "v", "&&", "||"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(RULE_ALPHABET, max_size=30).map("".join), st.sampled_from(["v2", "v3"]))
def test_parsing_any_text_either_succeeds_or_raises_rule_error(text: str, syntax: str) -> None:
    try:
        parse_http_rule(text, syntax)
    except RuleError:
        pass
    try:
        parse_domains(text)
    except RuleError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["v2", "v3"]))
def test_parsing_arbitrary_unicode_only_raises_rule_error(text: str, syntax: str) -> None:
    for rule in (text, f"Path(`{text}`)", f"HostRegexp(`{text}`)", f"Query(`{text}`)"):
        try:
            parse_http_rule(rule, syntax)
        except RuleError:
            pass
