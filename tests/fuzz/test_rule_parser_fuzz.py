"""Fuzz properties of the rule parser: any text gives a Rule or a RuleError, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchyard.rules import ConnMeta, Rule, RuleError, parse_http_rule, parse_rule

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MATCHERS = ["HostSNI", "HostSNIRegexp", "ClientIP", "ALPN", "Host", "HostRegexp", "Path",
            "PathPrefix", "PathRegexp", "Header", "HeaderRegexp", "Method", "Query",
            "QueryRegexp", "hostsni", "Unknown"]
ARGUMENTS = ["*", "a.example.com", "*.example.com", "", "10.0.0.0/8", "::1", "h2",
             "acme-tls/1", "^.+\\.example\\.com$", "{sub:[a-z]+}.example.com", "(", "\\C",
             "a\x18b", "\x00", "é.example", "xn--bcher-kva.example", "a" * 300, "%", "\\"]
QUOTES = ["`", '"', "'"]

argument = st.sampled_from(ARGUMENTS) | st.text(max_size=12)


@st.composite
def matcher_call(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from(QUOTES))
    args = draw(st.lists(argument, max_size=3))
    separator = draw(st.sampled_from([", ", ",", " , "]))
    negation = draw(st.sampled_from(["", "!", "!!", "! "]))
    inner = separator.join(f"{quote}{a}{quote}" for a in args)
    return f"{negation}{draw(st.sampled_from(MATCHERS))}({inner})"


rule_like = st.recursive(
    matcher_call(),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["&&", "||", "&", "|"]),
                  inner),
        inner.map(lambda r: f"({r})"),
        inner.map(lambda r: f"!({r})"),
    ),
    max_leaves=6,
)
# Valid-looking rules with one character changed, dropped or inserted.
mutated = st.builds(
    lambda rule, pos, char, mode: (rule[:pos] + char + rule[pos + (mode == "replace"):]
                                   if mode != "drop" else rule[:pos] + rule[pos + 1:]),
    rule_like, st.integers(0, 80), st.sampled_from(list("()`\"'!&|, \x18\x00\n\\{}*")),
    st.sampled_from(["replace", "insert", "drop"]))
rule_text = rule_like | mutated | st.text(max_size=80)

connections = st.builds(
    ConnMeta,
    sni=st.none() | st.sampled_from(["a.example.com", "b.example.com", "", "A.Example.COM"])
    | st.text(max_size=20),
    alpn=st.lists(st.sampled_from(["h2", "http/1.1", "acme-tls/1"]) | st.text(max_size=5),
                  max_size=3).map(tuple),
    client_ip=st.sampled_from(["10.1.2.3", "127.0.0.1", "::1", "2001:db8::1", "not-an-ip"]),
    tls=st.booleans(),
)


SOME_CONNECTIONS = [ConnMeta("a.example.com", ("h2",), "10.1.2.3", True),
                    ConnMeta(None, (), "::1", False), ConnMeta("", ("acme-tls/1",), "x", True)]


def parsed(text: str, syntax: str) -> Rule | None:
    """The rule, or None for a RuleError; any other exception fails the property."""
    try:
        rule = parse_rule(text, syntax)
    except RuleError as error:
        assert str(error)  # a message, with the rule and the position
        return None
    assert rule.text == text
    return rule


def check_http_rule(text: str, syntax: str) -> None:
    try:
        parse_http_rule(text, syntax)
    except RuleError as error:
        assert str(error)


def check_matches(rule: Rule, metas: list[ConnMeta]) -> None:
    for meta in metas:
        assert rule.matches(meta) in (True, False)
        if rule.exact_hosts is not None and meta.sni:
            # The routing table looks such rules up by host instead of running them.
            assert rule.matches(meta) == (meta.sni.lower() in rule.exact_hosts), meta


def check_one_input(data: bytes) -> None:
    """Every property for one input (the atheris entry point's body): byte 0 picks the syntax."""
    syntax = "v2" if data[:1] == b"2" else "v3"
    text = data[1:].decode("utf-8", "replace")
    rule = parsed(text, syntax)
    if rule is not None:
        check_matches(rule, SOME_CONNECTIONS)
    check_http_rule(text, syntax)


REGRESSIONS = ["HostSNI(`a\x18b`)", "HostSNI(`*`)\x18", "(" * 5000 + "HostSNI(`a`)" + ")" * 5000,
               "!" * 20000 + "HostSNI(`a`)", "HostSNIRegexp(`" + "(" * 1000 + ")" * 1000 + "`)",
               "HostSNIRegexp(`a{1000}{1000}`)", "HostSNIRegexp(`\\C`)", "ClientIP(`10.0.0.0/33`)",
               "Host(`a\x18b`)", "PathRegexp(`(`)"]


@pytest.mark.parametrize("text", REGRESSIONS)
@pytest.mark.parametrize("syntax", ["3", "2"])
def test_known_edge_rules_hold_every_property(text: str, syntax: str) -> None:
    check_one_input(syntax.encode() + text.encode())


@FAST
@given(rule_text, st.sampled_from(["v3", "v2", ""]))
def test_any_text_parses_or_raises_rule_error(text: str, syntax: str) -> None:
    parsed(text, syntax)


@FAST
@given(rule_text, st.sampled_from(["v3", "v2"]))
def test_any_text_parses_as_an_http_rule_or_raises_rule_error(text: str, syntax: str) -> None:
    check_http_rule(text, syntax)


@settings(FAST, max_examples=200)
@given(rule_like, st.sampled_from(["v3", "v2"]), st.lists(connections, min_size=1, max_size=4))
def test_a_parsed_rule_answers_true_or_false_for_any_connection(
        text: str, syntax: str, metas: list[ConnMeta]) -> None:
    rule = parsed(text, syntax)
    if rule is not None:
        check_matches(rule, metas)


host_alternatives = st.lists(
    st.sampled_from(["a.example.com", "B.example.com", "*.example.com", "*", "x"])
    | st.text(alphabet="abAB.-_*:9", min_size=1, max_size=10), min_size=1, max_size=4,
).map(lambda hosts: " || ".join(f"HostSNI(`{host}`)" for host in hosts))


@FAST
@given(host_alternatives, st.lists(connections, min_size=1, max_size=4))
@example("HostSNI(`a.example.com`) || HostSNI(`B.example.com`)",
         [ConnMeta("b.example.com", (), "10.1.2.3", True)])
def test_an_indexed_rule_matches_exactly_its_exact_hosts(
        text: str, metas: list[ConnMeta]) -> None:
    rule = parsed(text, "v3")
    if rule is not None:
        check_matches(rule, metas)
