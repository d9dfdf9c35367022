"""Compiled rules: evaluation, catch-all, host index, ParseHostSNI, and properties over
random rule trees."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.rules import ConnMeta, RuleError, host_sni_values, parse_rule

# --- random rule trees with an independent reference evaluation ---------------------------

SNIS = [
    None,
    "",
    "a.example.com",
    "A.EXAMPLE.COM",
    "x.a.example.com",
    "example.com",
    "b.example.com",
    ".example.com",
    "a.example.com.",
    "other.org",
]
ALPNS: list[tuple[str, ...]] = [(), ("h2",), ("http/1.1",), ("h2", "http/1.1"), ("imap",)]
IPS = [
    "10.1.2.3",
    "::ffff:10.1.2.3",
    "192.168.1.1",
    "::ffff:192.168.1.1",
    "2001:db8::1",
    "fe80::1%eth0",
    "garbage",
    "",
]
METAS = [
    ConnMeta(sni, alpn, ip, bool(sni)) for sni, alpn, ip in itertools.product(SNIS, ALPNS, IPS)
]


@dataclass(frozen=True)
class Leaf:
    """Ways to write one matcher, and which metadata it matches, tabulated by hand."""

    spellings: tuple[str, ...]
    expected: Callable[[ConnMeta], bool]


def sni_in(*snis: str | None) -> Callable[[ConnMeta], bool]:
    return lambda m: m.sni in snis


def ip_in(*ips: str) -> Callable[[ConnMeta], bool]:
    return lambda m: m.client_ip in ips


LEAVES = [
    Leaf(
        ("HostSNI(`a.example.com`)", 'hostsni("A.Example.COM.")', "HOSTSNI( `a.example.com` ,)"),
        sni_in("a.example.com", "A.EXAMPLE.COM"),
    ),
    Leaf(
        ("HostSNI(`*.example.com`)", 'Hostsni("*.EXAMPLE.com")'),
        sni_in("a.example.com", "A.EXAMPLE.COM", "b.example.com", ".example.com"),
    ),
    Leaf(("HostSNI(`*`)", 'HostSNI("*")'), lambda m: True),
    Leaf(("HostSNIRegexp(`^b\\.`)", 'HOSTSNIREGEXP("^b\\\\.")'), sni_in("b.example.com")),
    Leaf(("hostsniregexp(`^$`)",), sni_in(None, "")),
    Leaf(
        ("HostSNIRegexp(`(?i)EXAMPLE\\.COM$`)",),
        sni_in(
            "a.example.com",
            "A.EXAMPLE.COM",
            "x.a.example.com",
            "example.com",
            "b.example.com",
            ".example.com",
        ),
    ),
    Leaf(
        ("ClientIP(`10.0.0.0/8`)", "clientip(`10.9.9.9/8`)"), ip_in("10.1.2.3", "::ffff:10.1.2.3")
    ),
    Leaf(("ClientIP(`::ffff:192.168.1.1`)",), ip_in("192.168.1.1", "::ffff:192.168.1.1")),
    Leaf(("CLIENTIP(`2001:db8::/32`)",), ip_in("2001:db8::1")),
    Leaf(("Clientip(`fe80::/10`)",), ip_in("fe80::1%eth0")),
    Leaf(("ClientIP(`::/0`)",), ip_in("2001:db8::1", "fe80::1%eth0")),
    Leaf(("ALPN(`h2`)", 'alpn("h2")'), lambda m: "h2" in m.alpn),
    Leaf(("Alpn(`http/1.1`)",), lambda m: "http/1.1" in m.alpn),
]

Tree = tuple  # ("leaf", index, spelling) | ("not", tree) | ("and" | "or", tree, tree)

trees: st.SearchStrategy[Tree] = st.recursive(
    st.tuples(st.just("leaf"), st.integers(0, len(LEAVES) - 1), st.integers(0, 2)),
    lambda children: st.one_of(
        st.tuples(st.just("not"), children),
        st.tuples(st.sampled_from(["and", "or"]), children, children),
    ),
    max_leaves=8,
)

PRECEDENCE = {"or": 1, "and": 2, "not": 3, "leaf": 3}
BLANKS = st.sampled_from([" ", "", "  ", "\t", " /* note */ "])


def evaluate(tree: Tree, m: ConnMeta) -> bool:
    kind = tree[0]
    if kind == "leaf":
        return LEAVES[tree[1]].expected(m)
    if kind == "not":
        return not evaluate(tree[1], m)
    if kind == "and":
        return evaluate(tree[1], m) and evaluate(tree[2], m)
    return evaluate(tree[1], m) or evaluate(tree[2], m)


def render(tree: Tree, draw: st.DrawFn) -> str:
    """Print the tree as rule text with only the parentheses precedence needs, plus some
    redundant ones, random blanks, comments and line breaks after operators."""
    kind = tree[0]
    if kind == "leaf":
        spellings = LEAVES[tree[1]].spellings
        text = spellings[tree[2] % len(spellings)]
    elif kind == "not":
        inner = render(tree[1], draw)
        text = "!" + draw(BLANKS) + (inner if PRECEDENCE[tree[1][0]] == 3 else f"({inner})")
    else:
        parts = []
        for child in tree[1:]:
            part = render(child, draw)
            parts.append(f"({part})" if PRECEDENCE[child[0]] < PRECEDENCE[kind] else part)
        operator = "&&" if kind == "and" else "||"
        after = draw(st.sampled_from([" ", "\n", " \n\t"]))
        text = f"{parts[0]}{draw(BLANKS)}{operator}{after}{parts[1]}"
    if draw(st.integers(0, 5)) == 0:
        text = f"({draw(BLANKS)}{text}{draw(BLANKS)})"
    return text


@st.composite
def rules(draw: st.DrawFn) -> tuple[str, Tree]:
    tree = draw(trees)
    return render(tree, draw), tree


@settings(max_examples=150, deadline=None)
@given(rules())
def test_compiled_rule_agrees_with_a_reference_evaluation(rule: tuple[str, Tree]) -> None:
    text, tree = rule
    compiled = parse_rule(text)
    for m in METAS:
        assert compiled.matches(m) is evaluate(tree, m), (text, m)


@settings(max_examples=100, deadline=None)
@given(rules())
def test_negated_rule_matches_exactly_when_the_rule_does_not(rule: tuple[str, Tree]) -> None:
    text, _ = rule
    plain = parse_rule(text)
    negated = parse_rule(f"!({text})")
    for m in METAS:
        assert negated.matches(m) is not plain.matches(m)


@settings(max_examples=100, deadline=None)
@given(rules(), rules())
def test_or_matches_either_side_and_and_matches_both(
    a: tuple[str, Tree], b: tuple[str, Tree]
) -> None:
    left, right = parse_rule(a[0]), parse_rule(b[0])
    either = parse_rule(f"({a[0]}) || ({b[0]})")
    both = parse_rule(f"({a[0]}) && ({b[0]})")
    for m in METAS:
        assert either.matches(m) is (left.matches(m) or right.matches(m))
        assert both.matches(m) is (left.matches(m) and right.matches(m))


def sni_key_matches(hosts: frozenset[str], m: ConnMeta) -> bool:
    return bool(m.sni) and m.sni.lower() in hosts  # type: ignore[union-attr]


@settings(max_examples=150, deadline=None)
@given(rules())
def test_exact_hosts_when_present_decide_the_match(rule: tuple[str, Tree]) -> None:
    compiled = parse_rule(rule[0])
    if compiled.exact_hosts is not None:
        for m in METAS:
            assert compiled.matches(m) is sni_key_matches(compiled.exact_hosts, m)


HOST_VALUES = [
    "a.example.com",
    "B.Example.COM.",
    "c.org",
    "c.org.",
    "x:443",
    "_srv.example.com",
    ".",
]
HOST_SNIS = [
    None,
    "",
    ".",
    "a.example.com",
    "A.EXAMPLE.COM",
    "a.example.com.",
    "b.example.com",
    "B.EXAMPLE.COM",
    "b.example.com.",
    "c.org",
    "c.org.",
    "x:443",
    "X:443",
    "_SRV.example.com",
    "example.com",
    "zzz",
]


@st.composite
def host_only_rules(draw: st.DrawFn) -> str:
    """An OR of concrete HostSNI values, written many ways (negations that cancel included)."""
    values = draw(st.lists(st.sampled_from(HOST_VALUES), min_size=1, max_size=5))
    calls = []
    for value in values:
        name = draw(st.sampled_from(["HostSNI", "hostsni", "HOSTSNI", "Hostsni"]))
        quoted = draw(st.sampled_from([f"`{value}`", f'"{value}"']))
        calls.append(
            draw(
                st.sampled_from([f"{name}({quoted})", f"!!{name}({quoted})", f"({name}({quoted}))"])
            )
        )
    if len(calls) > 1 and draw(st.booleans()):
        # De Morgan: !(!a && !b) is a || b.
        return "!(" + " && ".join("!" + c for c in calls) + ")"
    return " || ".join(calls)


@settings(max_examples=150, deadline=None)
@given(host_only_rules())
def test_exact_hosts_of_host_only_rules_agree_with_matches(text: str) -> None:
    compiled = parse_rule(text)
    assert compiled.exact_hosts is not None
    for sni in HOST_SNIS:
        m = ConnMeta(sni, (), "10.0.0.1", True)
        assert compiled.matches(m) is sni_key_matches(compiled.exact_hosts, m), (text, sni)


RULE_ALPHABET = st.sampled_from(
    [
        "HostSNI",
        "ClientIP",
        "ALPN",
        "HostSNIRegexp",
        "hostsni",
        "(",
        ")",
        "`",
        '"',
        "'",
        "\\",
        "!",
        "&&",
        "||",
        "&",
        "|",
        ",",
        "...",
        "\n",
        " ",
        "/*",
        "*/",
        "//",
        ";",
        "*",
        ".",
        "a",
        "1",
        "é",
        "x2e",
        "u00e9",
        "{",
        "}",
        "[",
        "%",
        "/",
        ":",
        "\r",
        "\t",
        "\x00",
        "\ufeff",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(RULE_ALPHABET, max_size=25).map("".join)))
def test_arbitrary_text_only_ever_raises_rule_error(text: str) -> None:
    for syntax in ("v3", "v2"):
        try:
            parse_rule(text, syntax)
        except RuleError:
            pass
    try:
        host_sni_values(text)
    except RuleError:
        pass


def test_text_with_lone_surrogates_raises_rule_error() -> None:
    with pytest.raises(RuleError):
        parse_rule("HostSNI(`\udc80`)")


# --- evaluation order ---------------------------------------------------------------------


# Real ConnMeta fields that fail the test when a matcher looks at them: a stand-in object
# would do in pure Python, but compiled matchers (setup.py) take only a ConnMeta.
class UntouchableIP(str):
    def __hash__(self) -> int:
        raise AssertionError("client_ip was evaluated")

    def __eq__(self, other: object) -> bool:
        raise AssertionError("client_ip was evaluated")


class UntouchableALPN(tuple[str, ...]):
    def __contains__(self, item: object) -> bool:
        raise AssertionError("alpn was evaluated")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("alpn was evaluated")


SPY_META = ConnMeta("a.com", UntouchableALPN(), UntouchableIP("10.0.0.1"), True)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("HostSNI(`a.com`) || ClientIP(`10.0.0.1`)", True),
        ("HostSNI(`b.com`) && ClientIP(`10.0.0.1`)", False),
        ("!HostSNI(`a.com`) && (ALPN(`h2`) || ClientIP(`10.0.0.1`))", False),
        ("HostSNI(`x`) || HostSNI(`a.com`) || ALPN(`h2`) || ClientIP(`::1`)", True),
        ("HostSNI(`x`) || !(HostSNI(`a.com`) || ALPN(`h2`) && ClientIP(`::1`))", False),
    ],
)
def test_evaluation_short_circuits_left_to_right(rule: str, expected: bool) -> None:
    assert parse_rule(rule).matches(SPY_META) is expected


# --- catch-all ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        "HostSNI(`*`)",
        "(HostSNI(`*`))",
        "((HostSNI(`*`)))",
        "HOSTSNI(`*`)",
        "hostsni(`*`)",
        "Hostsni(`*`)",
        'HostSNI("*")',
        "  HostSNI ( `*` )  ",
        "/* all */ HostSNI(`*`) // rest",
        "!!HostSNI(`*`)",
        "HostSNI(`*`,)",
    ],
)
def test_lone_star_host_is_the_catch_all_whatever_its_spelling(rule: str) -> None:
    assert parse_rule(rule).is_catch_all


@pytest.mark.parametrize(
    ("rule", "syntax"),
    [
        ("!HostSNI(`*`)", "v3"),
        ("HostSNI(`*`) || HostSNI(`*`)", "v3"),
        ("HostSNI(`*`) && ClientIP(`10.0.0.0/8`)", "v3"),
        ("HostSNI(`a.com`)", "v3"),
        ("HostSNIRegexp(`.*`)", "v3"),
        ("HostSNI(`*`, `a.com`)", "v2"),
    ],
)
def test_anything_else_is_not_the_catch_all(rule: str, syntax: str) -> None:
    assert not parse_rule(rule, syntax).is_catch_all


def test_v2_lone_star_is_also_the_catch_all() -> None:
    assert parse_rule("HostSNI(`*`)", "v2").is_catch_all


# --- exact hosts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "hosts"),
    [
        ("HostSNI(`a.com`)", {"a.com"}),
        ("HostSNI(`A.Com.`)", {"a.com"}),
        ("HostSNI(`a.com`) || hostsni(`B.com`)", {"a.com", "b.com"}),
        ("(HostSNI(`a`) || (HostSNI(`b`))) || HostSNI(`c`)", {"a", "b", "c"}),
        ("!(!HostSNI(`a`) && !HostSNI(`b`))", {"a", "b"}),
        ("HostSNI(`.`) || HostSNI(`a`)", {"a"}),
        ("HostSNI(`.`)", set()),
    ],
)
def test_rules_of_only_concrete_hosts_or_ed_have_exact_hosts(rule: str, hosts: set[str]) -> None:
    assert parse_rule(rule).exact_hosts == frozenset(hosts)


@pytest.mark.parametrize(
    ("rule", "syntax"),
    [
        ("HostSNI(`*`)", "v3"),
        ("HostSNI(`*.a.com`)", "v3"),
        ("HostSNI(`a`) || HostSNI(`*`)", "v3"),
        ("!HostSNI(`a`)", "v3"),
        ("HostSNI(`a`) && HostSNI(`b`)", "v3"),
        ("HostSNI(`a`) || ClientIP(`10.0.0.1`)", "v3"),
        ("HostSNI(`a`) || ALPN(`h2`)", "v3"),
        ("HostSNIRegexp(`^a$`)", "v3"),
        ("HostSNI(`a`)", "v2"),
    ],
)
def test_other_rules_have_no_exact_hosts(rule: str, syntax: str) -> None:
    assert parse_rule(rule, syntax).exact_hosts is None


# --- ParseHostSNI -------------------------------------------------------------------------


def test_host_sni_values_are_lower_cased_left_to_right() -> None:
    rule = "ClientIP(`1.2.3.4`) && !HostSNI(`B.com`) || HostSNIRegexp(`x`) || hostsni(`*`)"
    assert host_sni_values(rule) == ["b.com", "*"]
    assert parse_rule(rule).host_sni_values == ("b.com", "*")


def test_host_sni_values_skip_validation() -> None:
    assert host_sni_values("HostSNI()") == []
    assert host_sni_values("HostSNI(`not valid!`) && ALPN(`acme-tls/1`)") == ["not valid!"]
    assert host_sni_values("HostSNI(`A`, `B`, ``)") == ["a", "b", ""]


def test_host_sni_values_raise_on_syntax_errors_and_unknown_matchers() -> None:
    with pytest.raises(RuleError):
        host_sni_values("Host(`a.com`)")
    with pytest.raises(RuleError):
        host_sni_values("HostSNI(`a.com`")


@pytest.mark.parametrize(
    ("rule", "first"),
    [
        ("HostSNI(`*`) || HostSNI(`a`)", "*"),
        ("HostSNI(`a`) || HostSNI(`*`)", "a"),
        ("!HostSNI(`a`)", "a"),
        ("ClientIP(`10.0.0.1`) && HostSNI(`*`)", "*"),
    ],
)
def test_the_first_collected_host_is_what_the_no_tls_check_looks_at(rule: str, first: str) -> None:
    assert host_sni_values(rule)[0] == first


def test_regexp_only_rules_collect_no_host() -> None:
    assert host_sni_values("HostSNIRegexp(`^a$`)") == []


# --- the Rule object ----------------------------------------------------------------------


def test_rule_keeps_its_text_and_effective_syntax() -> None:
    rule = parse_rule("HostSNI(`a`)", "whatever")
    assert (rule.text, rule.syntax) == ("HostSNI(`a`)", "v3")
    assert repr(rule) == "Rule('HostSNI(`a`)', syntax='v3')"


def test_parsing_ten_thousand_rules_is_fast() -> None:
    texts = [
        f"HostSNI(`h{i}.example.com`) || (HostSNI(`*.h{i}.example.org`) && ClientIP(`10.{i % 256}.0.0/16`))"
        for i in range(10_000)
    ]
    started = time.perf_counter()
    for text in texts:
        parse_rule(text)
    # Around 0.3 s on a laptop; the bound leaves room for slow CI machines.
    assert time.perf_counter() - started < 3.0
