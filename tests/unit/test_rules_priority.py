"""Default router priority: -1 for a lone HostSNI(`*`), else the rule's UTF-8 byte length."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.rules import default_priority, parse_rule


@pytest.mark.parametrize(
    "rule",
    [
        "HostSNI(`*`)",
        "(HostSNI(`*`))",
        "HOSTSNI(`*`)",
        "hostsni(`*`)",
        "Hostsni(`*`)",
        'HostSNI("*")',
        "   HostSNI(  `*`  )   ",
        "HostSNI(`*`)\n",
        "/* fallback */ HostSNI(`*`)",
        "!HostSNI(`*`)",  # negation is folded into the leaf before the check
        "!!!HostSNI(`*`)",
    ],
)
def test_lone_star_host_gets_minus_one(rule: str) -> None:
    assert default_priority(rule) == -1


@pytest.mark.parametrize(
    ("rule", "priority"),
    [
        ("HostSNI(`*`) || HostSNI(`*`)", 28),
        ("HostSNI(`example.com`)", 22),
        ("HostSNI(`*`) && ClientIP(`10.0.0.0/8`)", 38),
        ("HostSNI(`*`, `*`)", 17),  # two values is not a lone star
        ("HostSNI()", 9),
        ("HostSNIRegexp(`*`)", 18),
        ("ClientIP(`10.0.0.1`)", 20),
    ],
)
def test_other_rules_get_their_length(rule: str, priority: int) -> None:
    assert default_priority(rule) == priority


def test_length_counts_utf8_bytes_not_characters() -> None:
    rule = "HostSNI(`bücher.de`)"
    assert len(rule) == 20
    assert default_priority(rule) == 21


def test_length_counts_every_blank_and_comment() -> None:
    assert default_priority("HostSNI(`a`) ||\n\tHostSNI(`b`) /* c */") == 37


@pytest.mark.parametrize(
    ("rule", "priority"),
    [
        ("HostSNI(`*`", 11),
        ("hostSNI(`*`)", 12),
        ("HostSNI(`*`);", 13),
        ("HostSNI(`*`)\n|| x", 17),
        ("", 0),
    ],
)
def test_rules_that_do_not_parse_still_get_their_length(rule: str, priority: int) -> None:
    assert default_priority(rule) == priority


def test_rule_with_lone_surrogates_gets_a_length_instead_of_an_exception() -> None:
    assert default_priority("HostSNI(`\udc80`)") == 11 + 3


LEAVES = st.sampled_from(["HostSNI", "HostSNIRegexp", "ClientIP", "ALPN", "hostsni"])
VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="`"), max_size=12
)


@st.composite
def non_catch_all_rules(draw: st.DrawFn) -> str:
    calls = [f"{draw(LEAVES)}(`{draw(VALUES)}`)" for _ in range(draw(st.integers(1, 4)))]
    text = calls[0]
    for call in calls[1:]:
        text = (
            f"{text} {draw(st.sampled_from(['&&', '||']))} {draw(st.sampled_from(['', '!']))}{call}"
        )
    return text


@settings(max_examples=200, deadline=None)
@given(non_catch_all_rules())
def test_priority_is_the_utf8_length_for_rules_that_are_not_the_catch_all(rule: str) -> None:
    if rule in ("HostSNI(`*`)", "hostsni(`*`)"):
        assert default_priority(rule) == -1
    else:
        assert default_priority(rule) == len(rule.encode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_priority_of_arbitrary_text_is_minus_one_only_for_a_lone_star(text: str) -> None:
    priority = default_priority(text)
    if priority == -1:
        assert parse_rule(text).is_catch_all or parse_rule("!(" + text + ")").is_catch_all
    else:
        assert priority == len(text.encode("utf-8"))
