"""Rule text to matcher tree: Go grammar, precedence, negation, names and error reporting."""

from __future__ import annotations

import pickle

import pytest

from switchyard.rules import RuleError
from switchyard.rules.parser import (
    MAX_NESTING,
    AllOf,
    AnyOf,
    MatcherCall,
    Node,
    host_sni_args,
    negate,
    parse,
)


def leaf(value: str, negated: bool = False) -> tuple[str, bool]:
    return (value, negated)


def shape(node: Node) -> object:
    """The tree with positions dropped: ("or"|"and", [...]) or (value, negated)."""
    if isinstance(node, MatcherCall):
        return (node.args[0] if node.args else None, node.negated)
    return ("and" if isinstance(node, AllOf) else "or", [shape(op) for op in node.operands])


def call(value: str) -> str:
    return f"HostSNI(`{value}`)"


def error_of(rule: str) -> RuleError:
    with pytest.raises(RuleError) as caught:
        parse(rule)
    return caught.value


A, B, C, D = call("a"), call("b"), call("c"), call("d")


def test_a_single_call_is_a_leaf_with_positions() -> None:
    assert parse("  ClientIP(`10.0.0.1`, `::1`)") == MatcherCall(
        "ClientIP", ("10.0.0.1", "::1"), 2, (11, 23)
    )


def test_and_binds_tighter_than_or() -> None:
    assert shape(parse(f"{A} || {B} && {C}")) == (
        "or",
        [leaf("a"), ("and", [leaf("b"), leaf("c")])],
    )
    assert shape(parse(f"{A} && {B} || {C}")) == (
        "or",
        [("and", [leaf("a"), leaf("b")]), leaf("c")],
    )


def test_not_binds_tighter_than_and_and_or() -> None:
    assert shape(parse(f"!{A} || {B}")) == ("or", [leaf("a", True), leaf("b")])
    assert shape(parse(f"!{A} && {B}")) == ("and", [leaf("a", True), leaf("b")])


def test_parentheses_group() -> None:
    assert shape(parse(f"({A} || {B}) && {C}")) == (
        "and",
        [("or", [leaf("a"), leaf("b")]), leaf("c")],
    )


def test_chains_of_one_operator_are_flattened_in_order() -> None:
    expected = ("or", [leaf("a"), leaf("b"), leaf("c"), leaf("d")])
    assert shape(parse(f"{A} || {B} || {C} || {D}")) == expected
    assert shape(parse(f"({A} || {B}) || ({C} || {D})")) == expected
    assert shape(parse(f"{A} || ({B} || ({C} || {D}))")) == expected


def test_negation_is_pushed_to_the_leaves_by_de_morgan() -> None:
    assert shape(parse(f"!({A} && {B})")) == ("or", [leaf("a", True), leaf("b", True)])
    assert shape(parse(f"!({A} || !{B})")) == ("and", [leaf("a", True), leaf("b")])
    assert shape(parse(f"!(({A} || {B}) && {C})")) == (
        "or",
        [("and", [leaf("a", True), leaf("b", True)]), leaf("c", True)],
    )


def test_double_negation_cancels_and_bangs_repeat() -> None:
    assert shape(parse(f"!!{A}")) == leaf("a")
    assert shape(parse(f"!!!{A}")) == leaf("a", True)
    assert shape(parse(f"! ! !({A})")) == leaf("a", True)


def test_long_runs_of_bangs_do_not_recurse() -> None:
    assert shape(parse("!" * 5001 + A)) == leaf("a", True)


def test_long_or_chains_parse() -> None:
    node = parse(" || ".join(call(f"h{i}") for i in range(3000)))
    assert isinstance(node, AnyOf)
    assert len(node.operands) == 3000


def test_negate_twice_is_identity() -> None:
    node = parse(f"{A} && !({B} || {C}) || !{D}")
    assert negate(negate(node)) == node


@pytest.mark.parametrize(
    "spelling",
    [
        "HostSNI",
        "hostsni",
        "HOSTSNI",
        "Hostsni",
        "HostSNIRegexp",
        "hostsniregexp",
        "HOSTSNIREGEXP",
        "Hostsniregexp",
        "ClientIP",
        "clientip",
        "CLIENTIP",
        "Clientip",
        "ALPN",
        "alpn",
        "Alpn",
    ],
)
def test_the_four_spellings_of_each_matcher_are_accepted(spelling: str) -> None:
    node = parse(f"{spelling}(`x`)")
    assert isinstance(node, MatcherCall)
    assert node.name.lower() == spelling.lower()
    assert node.name in {"HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"}


@pytest.mark.parametrize(
    ("spelling", "listed"),
    [
        ("hostSNI", "HostSNI, hostsni, HOSTSNI, Hostsni"),
        ("ClientIp", "ClientIP, clientip, CLIENTIP, Clientip"),
        ("HostSniRegexp", "HostSNIRegexp, hostsniregexp, HOSTSNIREGEXP, Hostsniregexp"),
        ("aLPN", "ALPN, alpn, Alpn"),
    ],
)
def test_other_casings_are_unsupported_and_the_message_lists_the_spellings(
    spelling: str, listed: str
) -> None:
    error = error_of(f"{spelling}(`x`)")
    assert error.problem.startswith(f"unsupported function {spelling}")
    assert listed in error.problem
    assert error.column == 1


def test_http_matchers_are_unknown_with_a_hint() -> None:
    error = error_of("Host(`example.com`)")
    assert "unsupported function Host" in error.problem
    assert "HTTP matcher" in error.problem


def test_unknown_names_list_the_tcp_matchers() -> None:
    assert "HostSNI, HostSNIRegexp, ClientIP and ALPN" in error_of("Foo(`x`)").problem


def test_line_break_before_an_operator_is_an_error() -> None:
    error = error_of(f"{A}\n|| {B}")
    assert (error.line, error.column) == (1, 13)
    assert "line break" in error.problem
    assert "end of the line" in error.problem


def test_line_break_after_an_operator_is_fine() -> None:
    assert shape(parse(f"{A} ||\n{B} &&\n\t!\n{C}")) == (
        "or",
        [leaf("a"), ("and", [leaf("b"), leaf("c", True)])],
    )


def test_line_breaks_at_the_end_and_the_start_are_fine() -> None:
    assert shape(parse(f"\n\n{A}\n\n")) == leaf("a")


def test_line_break_inside_arguments_needs_a_trailing_comma() -> None:
    assert shape(parse("HostSNI(\n`a`,\n)")) == leaf("a")
    assert "line break" in error_of("HostSNI(\n`a`\n)").problem


def test_line_break_between_name_and_parenthesis_is_an_error() -> None:
    assert "line break" in error_of("HostSNI\n(`a`)").problem


def test_line_break_inside_parentheses_before_an_operator_is_an_error() -> None:
    assert "line break" in error_of(f"({A}\n|| {B})").problem


def test_comments_are_accepted_anywhere_between_tokens() -> None:
    rule = f"/* lead */ {A} /* mid */ || // to the end\n HostSNI /* x */ (/* y */`b`/* z */) // end"
    assert shape(parse(rule)) == ("or", [leaf("a"), leaf("b")])


def test_multi_line_comment_before_an_operator_is_a_line_break() -> None:
    assert "line break" in error_of(f"{A} /* a\n b */ || {B}").problem


@pytest.mark.parametrize("rule", ["", "   ", "\n\t\r\n", "/* only a comment */", "// nothing"])
def test_empty_rules_are_refused(rule: str) -> None:
    assert error_of(rule).problem == "empty rule"


def test_trailing_semicolon_is_refused() -> None:
    assert "';'" in error_of(f"{A};").problem


def test_trailing_comma_and_spread_in_arguments_are_go_syntax() -> None:
    assert parse("HostSNI(`a`,)").args == ("a",)  # type: ignore[union-attr]
    assert parse("HostSNI(`a`...)").args == ("a",)  # type: ignore[union-attr]
    assert parse("ClientIP(`a`, `b`..., )").args == ("a", "b")  # type: ignore[union-attr]


def test_zero_arguments_parse_and_fail_only_when_built() -> None:
    assert parse("HostSNI()") == MatcherCall("HostSNI", (), 0, ())


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("`a`", "a string is not a matcher"),
        ('"a" || HostSNI(`b`)', "a string is not a matcher"),
        ("HostSNI", "expected '(' after HostSNI"),
        ("HostSNI(foo)", "not the name foo"),
        ("HostSNI(HostSNI(`a`))", "not the name HostSNI"),
        ("HostSNI((`a`))", "expected a string argument"),
        ("HostSNI(`a`)(`b`)", "expected '&&', '||' or the end of the rule, found '('"),
        ("(HostSNI)(`a`)", "expected '(' after HostSNI"),
        ("()", "expected a matcher"),
        (f"{A} ||", "found the end of the rule"),
        (f"{A} && && {B}", "found '&&'"),
        (f"({A}", "')' closing the '(' at column 1"),
        (f"{A})", "found ')'"),
        ("HostSNI(,)", "found ','"),
        ("HostSNI(`a`,,)", "found ','"),
        ("HostSNI(`a` `b`)", "expected ',' or ')'"),
        ("HostSNI(`a`", "expected ',' or ')' in the arguments of HostSNI"),
        ("HostSNI(`a`,", "missing ')'"),
        ("HostSNI(`a`..., `b`)", "closing the '('"),
        ("HostSNI(...)", "found '...'"),
        (f"{A} {B}", "found 'HostSNI'"),
        ("!", "found the end of the rule"),
    ],
)
def test_constructs_outside_the_rule_language_are_refused(rule: str, words: str) -> None:
    assert words in error_of(rule).problem


def test_error_message_names_rule_column_and_problem() -> None:
    error = error_of("HostSNI(`a`) && Foo(`b`)")
    assert str(error).startswith(
        "rule HostSNI(`a`) && Foo(`b`): column 17: unsupported function Foo"
    )
    assert (error.offset, error.line, error.column) == (16, 1, 17)


def test_error_in_a_multi_line_rule_gives_line_and_column() -> None:
    error = error_of(f"{A} ||\n  Foo(`b`)")
    assert (error.line, error.column) == (2, 3)
    assert ": line 2, column 3: unsupported function Foo" in str(error)


def test_rule_error_is_a_value_error_and_survives_pickling() -> None:
    error = error_of("Foo(`x`)")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.rule, copy.offset, copy.problem, str(copy)) == (
        error.rule,
        error.offset,
        error.problem,
        str(error),
    )


def test_nesting_is_limited_to_keep_the_parser_off_the_stack_limit() -> None:
    depth = MAX_NESTING
    assert shape(parse("(" * depth + A + ")" * depth)) == leaf("a")
    error = error_of("(" * (depth + 1) + A + ")" * (depth + 1))
    assert "nest deeper" in error.problem
    assert error.column == depth + 1


def test_host_sni_args_are_left_to_right_ignoring_negation_and_other_matchers() -> None:
    node = parse(
        "ClientIP(`1.2.3.4`) && !HostSNI(`B`) || !(HostSNIRegexp(`x`) && hostsni(`c`, `d`))"
    )
    assert host_sni_args(node) == ("B", "c", "d")
