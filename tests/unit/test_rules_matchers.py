"""Leaf matchers: HostSNI, HostSNIRegexp, ClientIP and ALPN in the v3 and v2 syntaxes."""

from __future__ import annotations

import pytest

from switchyard.rules import ConnMeta, RuleError, parse_rule


def meta(
    sni: str | None = None, alpn: tuple[str, ...] = (), client_ip: str = "10.0.0.1"
) -> ConnMeta:
    return ConnMeta(sni=sni, alpn=alpn, client_ip=client_ip, tls=sni is not None)


def matches(rule: str, m: ConnMeta, syntax: str = "v3") -> bool:
    return parse_rule(rule, syntax).matches(m)


def sni_matches(rule: str, sni: str | None, syntax: str = "v3") -> bool:
    return matches(rule, meta(sni), syntax)


def error_of(rule: str, syntax: str = "v3") -> RuleError:
    with pytest.raises(RuleError) as caught:
        parse_rule(rule, syntax)
    return caught.value


# --- HostSNI (v3) -------------------------------------------------------------------------


def test_host_matches_its_sni_case_insensitively() -> None:
    rule = "HostSNI(`Example.COM`)"
    assert sni_matches(rule, "example.com")
    assert sni_matches(rule, "EXAMPLE.com")  # metadata built directly is not lower-cased
    assert not sni_matches(rule, "www.example.com")
    assert not sni_matches(rule, "example.co")


def test_host_never_matches_a_connection_without_sni() -> None:
    assert not sni_matches("HostSNI(`example.com`)", None)
    assert not sni_matches("HostSNI(`example.com`)", "")


def test_negated_host_matches_every_connection_without_sni() -> None:
    assert sni_matches("!HostSNI(`example.com`)", None)
    assert sni_matches("!HostSNI(`example.com`)", "")
    assert not sni_matches("!HostSNI(`example.com`)", "example.com")


def test_star_alone_matches_everything_including_no_sni() -> None:
    for sni in (None, "", "a", "x.y.z"):
        assert sni_matches("HostSNI(`*`)", sni)
    assert not sni_matches("!HostSNI(`*`)", None)


def test_one_trailing_dot_of_the_value_is_ignored() -> None:
    assert sni_matches("HostSNI(`example.com.`)", "example.com")
    assert not sni_matches("HostSNI(`example.com..`)", "example.com")
    assert sni_matches("HostSNI(`example.com..`)", "example.com.")


def test_sni_with_a_trailing_dot_matches_neither_form_of_the_value() -> None:
    assert not sni_matches("HostSNI(`example.com`)", "example.com.")
    assert not sni_matches("HostSNI(`example.com.`)", "example.com.")


def test_wildcard_matches_exactly_one_extra_label() -> None:
    rule = "HostSNI(`*.example.com`)"
    assert sni_matches(rule, "foo.example.com")
    assert sni_matches(rule, "FOO.Example.Com")
    assert not sni_matches(rule, "example.com")
    assert not sni_matches(rule, "a.b.example.com")
    assert not sni_matches(rule, "fooexample.com")
    assert not sni_matches(rule, None)


def test_wildcard_matches_an_empty_or_star_first_label() -> None:
    assert sni_matches("HostSNI(`*.example.com`)", ".example.com")
    assert sni_matches("HostSNI(`*.example.com`)", "*.example.com")


def test_wildcard_on_a_top_level_domain_is_allowed() -> None:
    assert sni_matches("HostSNI(`*.com`)", "example.com")
    assert not sni_matches("HostSNI(`*.com`)", "com")


def test_wildcard_value_trailing_dot_is_ignored_too() -> None:
    assert sni_matches("HostSNI(`*.example.com.`)", "a.example.com")


def test_colon_and_underscore_values_are_valid_and_match_literally() -> None:
    assert sni_matches("HostSNI(`example.com:443`)", "example.com:443")
    assert not sni_matches("HostSNI(`example.com:443`)", "example.com")
    assert sni_matches("HostSNI(`_acme.example.com`)", "_acme.example.com")


def test_value_that_is_only_a_dot_is_valid_and_matches_nothing() -> None:
    for sni in (None, "", ".", "a"):
        assert not sni_matches("HostSNI(`.`)", sni)


@pytest.mark.parametrize(
    "value",
    [
        "foo bar",
        "a/b",
        "[::1]",
        "**",
        "*.",
        "*example.com",
        "foo.*.com",
        "*.*.example.com",
        "example.com*",
        "a,b",
    ],
)
def test_invalid_host_values_are_refused(value: str) -> None:
    error = error_of(f"HostSNI(`{value}`)")
    assert f"`{value}` is not a valid host name" in error.problem
    assert error.column == 9


def test_non_ascii_host_is_refused_with_its_punycode() -> None:
    error = error_of("HostSNI(`bücher.example`)")
    assert "not ASCII" in error.problem
    assert "xn--bcher-kva.example" in error.problem


def test_punycode_hint_is_generic_when_no_valid_form_exists() -> None:
    error = error_of("HostSNI(`bü cher.example`)")
    assert "use the punycode (xn--) form of the name" in error.problem


def test_non_ascii_wildcard_gets_its_punycode_too() -> None:
    assert "`*.xn--bcher-kva.example`" in error_of("HostSNI(`*.bücher.example`)").problem


def test_double_quoted_escapes_are_decoded_before_validation() -> None:
    assert sni_matches('HostSNI("foo\\x2ecom")', "foo.com")


# --- HostSNIRegexp (v3) -------------------------------------------------------------------


def test_regexp_is_unanchored() -> None:
    assert sni_matches("HostSNIRegexp(`example`)", "www.example.com")
    assert not sni_matches("HostSNIRegexp(`^example`)", "www.example.com")


def test_regexp_is_case_sensitive_unless_the_pattern_says_otherwise() -> None:
    assert not sni_matches("HostSNIRegexp(`^WWW`)", "www.example.com")
    assert sni_matches("HostSNIRegexp(`(?i)^WWW`)", "www.example.com")


def test_regexp_runs_against_the_empty_sni_of_plain_connections() -> None:
    assert sni_matches("HostSNIRegexp(`^$`)", None)
    assert sni_matches("HostSNIRegexp(`.*`)", "")
    assert not sni_matches("HostSNIRegexp(`^$`)", "a")
    assert not sni_matches("HostSNIRegexp(`.+`)", None)


def test_regexp_dollar_is_end_of_text_like_go() -> None:
    # Python's re would also match before a final newline; RE2 does not.
    assert not sni_matches("HostSNIRegexp(`a$`)", "a\n")


def test_v2_templates_are_plain_regexp_text_in_v3() -> None:
    rule = "HostSNIRegexp(`{sub:[a-z]+}.example.com`)"
    assert not sni_matches(rule, "foo.example.com")
    assert sni_matches(rule, "{sub:abc}.example.com")  # braces are literal, [a-z]+ a class


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(a", "missing )"),
        ("(?<=a)b", "invalid perl operator"),
        ("(a)\\1", "invalid escape sequence"),
        ("a**", "bad repetition operator"),
        ("\\C", "\\C is not supported"),
        ("x{1001}", "invalid repetition size"),
    ],
)
def test_invalid_regexps_are_refused(pattern: str, words: str) -> None:
    error = error_of(f"HostSNIRegexp(`{pattern}`)")
    assert words in error.problem
    assert error.column == 15


def test_escaped_backslash_before_c_is_a_valid_regexp() -> None:
    assert sni_matches("HostSNIRegexp(`\\\\C`)", "a\\C")


def test_invalid_regexp_writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    error_of("HostSNIRegexp(`(unclosed`)")
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_non_ascii_regexp_is_refused() -> None:
    assert "not ASCII" in error_of("HostSNIRegexp(`bücher`)").problem


def test_regexp_copes_with_sni_bytes_that_are_not_utf8() -> None:
    sni = b"\xffexample".decode("utf-8", "surrogateescape")
    assert sni_matches("HostSNIRegexp(`example$`)", sni)


# --- ClientIP (v3) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "peer", "expected"),
    [
        ("10.0.0.1", "10.0.0.1", True),
        ("10.0.0.1", "10.0.0.2", False),
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.1.2.3/8", "10.200.3.4", True),  # host bits are ignored
        ("10.0.0.1", "::ffff:10.0.0.1", True),
        ("::ffff:10.0.0.1", "10.0.0.1", True),
        ("::ffff:0:0/96", "192.0.2.1", True),
        ("::/0", "192.0.2.1", False),
        ("::/0", "2001:db8::1", True),
        ("0.0.0.0/0", "2001:db8::1", False),
        ("fe80::/10", "fe80::1%eth0", True),
        ("10.0.0.0/8", "not-an-ip", False),
        ("10.0.0.0/8", "", False),
    ],
)
def test_client_ip_matches_the_peer_address(value: str, peer: str, expected: bool) -> None:
    assert matches(f"ClientIP(`{value}`)", meta(client_ip=peer)) is expected


def test_negated_client_ip_matches_an_unparsable_peer() -> None:
    assert matches("!ClientIP(`10.0.0.0/8`)", meta(client_ip="garbage"))


@pytest.mark.parametrize(
    "value", ["foo", "10.0.0.0/33", "::/129", "10.0.0.1/", " 10.0.0.1", "fe80::1%eth0", "010.0.0.1"]
)
def test_invalid_client_ip_values_are_refused_naming_the_value(value: str) -> None:
    error = error_of(f"ClientIP(`{value}`)")
    assert f'invalid IP or CIDR "{value}"' in error.problem
    assert "<nil>" not in error.problem
    assert error.column == 10


# --- ALPN (v3) ----------------------------------------------------------------------------


def test_alpn_matches_when_any_offered_protocol_is_equal() -> None:
    assert matches("ALPN(`h2`)", meta("a", alpn=("http/1.1", "h2")))
    assert not matches("ALPN(`h2`)", meta("a", alpn=("http/1.1",)))


def test_alpn_is_case_sensitive() -> None:
    assert not matches("ALPN(`H2`)", meta("a", alpn=("h2",)))


def test_alpn_never_matches_plain_connections() -> None:
    assert not matches("ALPN(`h2`)", meta(None, alpn=()))


def test_alpn_acme_tls_is_reserved() -> None:
    error = error_of("ALPN(`acme-tls/1`)")
    assert "reserved for ACME TLS-ALPN-01 challenges" in error.problem


def test_alpn_acme_tls_in_upper_case_is_an_ordinary_protocol() -> None:
    assert matches("ALPN(`ACME-TLS/1`)", meta("a", alpn=("ACME-TLS/1",)))


def test_alpn_accepts_non_ascii_and_escaped_bytes() -> None:
    assert matches("ALPN(`protö`)", meta("a", alpn=("protö",)))
    offered = b"\xff\x01".decode("utf-8", "surrogateescape")
    assert matches('ALPN("\\xff\\x01")', meta("a", alpn=(offered,)))


# --- checks shared by every matcher -------------------------------------------------------


@pytest.mark.parametrize("name", ["HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"])
@pytest.mark.parametrize("syntax", ["v3", "v2"])
def test_matcher_without_arguments_is_refused(name: str, syntax: str) -> None:
    error = error_of(f"{name}()", syntax)
    assert error.problem.startswith(f"no args for matcher {name}")
    assert error.column == 1


@pytest.mark.parametrize("name", ["HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"])
@pytest.mark.parametrize("syntax", ["v3", "v2"])
def test_empty_string_argument_is_refused(name: str, syntax: str) -> None:
    assert error_of(f'{name}("")', syntax).problem.startswith(f"empty args for matcher {name}")


def test_empty_argument_is_reported_before_the_argument_count() -> None:
    error = error_of("HostSNI(`a`, ``)")
    assert error.problem.startswith("empty args for matcher HostSNI")
    assert error.column == 14


@pytest.mark.parametrize("name", ["HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"])
def test_v3_matchers_take_exactly_one_argument(name: str) -> None:
    error = error_of(f"{name}(`a`, `b`)")
    assert f"{name} takes exactly one argument, got 2" in error.problem


def test_invalid_leaf_deep_in_the_tree_is_reported_at_its_argument() -> None:
    error = error_of("HostSNI(`a`) || (ALPN(`h2`) && !ClientIP(`nope`))")
    assert error.column == 42
    assert "ClientIP" in error.problem


# --- syntax selection ---------------------------------------------------------------------


@pytest.mark.parametrize("syntax", ["v3", "", "V2", "v2 ", "default", "garbage"])
def test_anything_but_exactly_v2_selects_v3(syntax: str) -> None:
    assert parse_rule("HostSNI(`*.example.com`)", syntax).syntax == "v3"
    assert "exactly one argument" in error_of("HostSNI(`a`, `b`)", syntax).problem


# --- v2 matchers --------------------------------------------------------------------------


def test_v2_host_takes_several_values_or_ed() -> None:
    rule = "HostSNI(`a.com`, `b.com`)"
    assert sni_matches(rule, "a.com", "v2")
    assert sni_matches(rule, "b.com", "v2")
    assert not sni_matches(rule, "c.com", "v2")
    assert not sni_matches(rule, None, "v2")


def test_v2_host_refuses_wildcard_subdomains() -> None:
    assert "wildcard subdomains need ruleSyntax v3" in error_of("HostSNI(`*.a.com`)", "v2").problem


def test_v2_host_lowers_the_value_but_compares_the_sni_exactly() -> None:
    assert sni_matches("HostSNI(`A.COM`)", "a.com", "v2")
    assert not sni_matches("HostSNI(`a.com`)", "A.COM", "v2")


def test_v2_host_matches_with_and_without_the_value_trailing_dot() -> None:
    assert sni_matches("HostSNI(`a.com.`)", "a.com", "v2")
    assert sni_matches("HostSNI(`a.com.`)", "a.com.", "v2")
    assert not sni_matches("HostSNI(`a.com`)", "a.com.", "v2")


def test_v2_star_first_matches_everything_later_only_connections_with_sni() -> None:
    assert sni_matches("HostSNI(`*`, `a.com`)", None, "v2")
    assert not sni_matches("HostSNI(`a.com`, `*`)", None, "v2")
    assert not sni_matches("HostSNI(`a.com`, `*`)", "", "v2")
    assert sni_matches("HostSNI(`a.com`, `*`)", "zzz", "v2")


def test_v2_host_value_that_is_only_a_dot_never_matches_the_empty_sni() -> None:
    assert not sni_matches("HostSNI(`.`)", "", "v2")
    assert sni_matches("HostSNI(`.`)", ".", "v2")


def test_v2_invalid_host_is_reported_at_that_value() -> None:
    error = error_of("HostSNI(`a.com`, `b c`)", "v2")
    assert error.column == 18
    assert "`b c`" in error.problem


def test_v2_regexp_template_is_anchored_and_case_insensitive() -> None:
    rule = "HostSNIRegexp(`{sub:[a-z]+}.example.com`)"
    assert sni_matches(rule, "foo.example.com", "v2")
    assert sni_matches(rule, "FOO.EXAMPLE.COM", "v2")
    assert not sni_matches(rule, "foo.example.com.evil", "v2")
    assert not sni_matches(rule, "x.foo.example.com", "v2")
    assert not sni_matches(rule, "fooXexample.com", "v2")  # the dot is literal


def test_v2_regexp_name_alone_is_one_label() -> None:
    rule = "HostSNIRegexp(`{sub}.example.com`)"
    assert sni_matches(rule, "a-b.example.com", "v2")
    assert not sni_matches(rule, "a.b.example.com", "v2")


def test_v2_regexp_text_outside_braces_is_literal() -> None:
    assert sni_matches("HostSNIRegexp(`^a\\b`)", "^a\\b", "v2")
    assert not sni_matches("HostSNIRegexp(`^a\\b`)", "a", "v2")


def test_v2_regexp_nested_braces_belong_to_the_pattern() -> None:
    assert sni_matches("HostSNIRegexp(`{id:[0-9]{3}}.example.com`)", "123.example.com", "v2")
    assert not sni_matches("HostSNIRegexp(`{id:[0-9]{3}}.example.com`)", "12.example.com", "v2")


def test_v2_regexp_takes_several_templates_or_ed() -> None:
    rule = "HostSNIRegexp(`a.com`, `{x}.b.com`)"
    assert sni_matches(rule, "a.com", "v2")
    assert sni_matches(rule, "q.b.com", "v2")
    assert not sni_matches(rule, "b.com", "v2")


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{a", "unbalanced braces"),
        ("a}", "unbalanced braces"),
        ("{}", "missing name or pattern in `{}`"),
        ("{:x}", "missing name or pattern"),
        ("{a:}", "missing name or pattern"),
        ("{a:(}", "missing )"),
    ],
)
def test_v2_regexp_template_errors(template: str, words: str) -> None:
    assert words in error_of(f"HostSNIRegexp(`{template}`)", "v2").problem


def test_v2_client_ip_takes_several_values() -> None:
    rule = "ClientIP(`10.0.0.1`, `192.168.0.0/16`)"
    assert matches(rule, meta(client_ip="192.168.4.4"), "v2")
    assert matches(rule, meta(client_ip="10.0.0.1"), "v2")
    assert not matches(rule, meta(client_ip="10.0.0.2"), "v2")
    assert not matches(rule, meta(client_ip=""), "v2")


def test_v2_client_ip_error_points_at_the_bad_value() -> None:
    error = error_of("ClientIP(`10.0.0.1`, `nope`)", "v2")
    assert error.column == 22
    assert '"nope"' in error.problem


def test_v2_alpn_takes_several_values_and_refuses_acme_anywhere() -> None:
    assert matches("ALPN(`h2`, `imap`)", meta("a", alpn=("imap",)), "v2")
    assert not matches("ALPN(`h2`, `imap`)", meta("a", alpn=("pop3",)), "v2")
    error = error_of("ALPN(`h2`, `acme-tls/1`)", "v2")
    assert "reserved for ACME" in error.problem
    assert error.column == 12
