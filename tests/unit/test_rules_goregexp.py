"""Go's ReplaceAllString and template expansion over RE2 (switchyard.rules.goregexp)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.rules.goregexp import GoRegexp


def replace(pattern: str, text: str, template: str) -> str:
    return GoRegexp(pattern).replace_all(text.encode(), template.encode()).decode()


@pytest.mark.parametrize(("template", "expected"), [
    # Go's documented examples for a(x*)b over "-ab-axxb-".
    ("T", "-T-T-"),
    ("$1", "--xx-"),
    ("$1W", "---"),      # $1W is ${1W}: no such group
    ("${1}W", "-W-xxW-"),
    ("$$1", "-$1-$1-"),
    ("$", "-$-$-"),      # a lone $ stays
    ("${1", "-${1-${1-"),  # unclosed brace: literal
    ("$-", "-$--$--"),
    ("${}", "-${}-${}-"),
    ("$01", "---"),      # leading zero: a name, not group 1
    ("$0", "-ab-axxb-"),
    ("$9", "---"),       # out of range: empty
])
def test_expansion_follows_go(template: str, expected: str) -> None:
    assert replace("a(x*)b", "-ab-axxb-", template) == expected


def test_named_groups_expand_by_name() -> None:
    assert replace(r"(?P<first>\w+)\s(?P<last>\w+)", "Alan Turing", "${last} ${first}") == \
        "Turing Alan"
    assert replace(r"(?P<first>\w+)\s(?P<last>\w+)", "Alan Turing", "$last_x") == ""


def test_ten_is_group_ten_not_group_one_then_zero() -> None:
    pattern = "".join(f"({c})" for c in "abcdefghij")
    assert replace(pattern, "abcdefghij", "$10") == "j"
    assert replace(pattern, "abcdefghij", "${1}0") == "a0"


def test_an_empty_match_right_after_a_match_is_not_replaced() -> None:
    assert replace("a*", "baaac", "X") == "XbXcX"  # Python's re.sub gives XbXXcX
    assert replace("", "abc", "-") == "-a-b-c-"
    assert replace("x*", "", "-") == "-"


def test_the_search_moves_by_whole_utf8_sequences() -> None:
    assert replace("", "é", "-") == "-é-"


def test_anchors_keep_their_meaning_after_the_first_match() -> None:
    assert replace("^a", "aaa", "b") == "baa"
    assert replace(r"\ba", "a a", "b") == "b b"


def test_a_bad_pattern_says_why() -> None:
    with pytest.raises(ValueError, match="missing"):
        GoRegexp("(")
    with pytest.raises(ValueError, match=r"\\C"):
        GoRegexp(r"a\C")


# A template as tokens: literal text, a group reference (braced or not) or "$$".
_literal = st.text(alphabet="ab/-.é", min_size=1, max_size=4)
_token = st.one_of(
    _literal.map(lambda text: ("lit", text)),
    st.integers(min_value=0, max_value=3).map(lambda n: ("num", n)),
    st.sampled_from(["x", "y", "nope"]).map(lambda name: ("name", name)),
    st.just(("dollar", "")),
)


def _render(tokens: list[tuple[str, object]], braced: list[bool]) -> str:
    out = []
    for (kind, value), brace in zip(tokens, braced, strict=True):
        if kind == "lit":
            out.append(str(value))
        elif kind == "dollar":
            out.append("$$")
        else:
            # Unbraced only when the next character cannot extend the name.
            out.append(f"${{{value}}}" if brace else f"${value}")
    return "".join(out)


_PATTERN = "(?P<x>a*)(b*)(?P<y>a?)"


@given(st.lists(_token, max_size=8), st.data(), st.text(alphabet="ab", max_size=6))
def test_expansion_is_the_concatenation_of_its_parts(tokens: list[tuple[str, object]],
                                                     data: st.DataObject, text: str) -> None:
    found = re.match(_PATTERN, text)
    assert found is not None
    braced, expected = [], []
    for index, (kind, value) in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        # An unbraced name would run on into a following letter, digit or '_'.
        extends = following is not None and (following[0] != "lit" or
                                             re.match(r"\w", str(following[1])) is not None)
        braced.append(extends or data.draw(st.booleans()))
        if kind == "lit":
            expected.append(str(value))
        elif kind == "dollar":
            expected.append("$")
        elif kind == "num":
            expected.append(found.group(int(str(value))))
        else:
            expected.append(found.groupdict().get(str(value)) or "")
    assert replace(f"^{_PATTERN}", text, _render(tokens, braced)) == \
        "".join(expected) + text[found.end():]


@given(st.text(alphabet="abc/", max_size=12), st.sampled_from(["a", "ab", "b/", "/c", "ca"]),
       st.text(alphabet="xy", max_size=3))
def test_replace_all_without_empty_matches_agrees_with_python(text: str, literal: str,
                                                              template: str) -> None:
    # Where no match can be empty, Go and Python walk the input alike.
    assert replace(re.escape(literal), text, template) == re.sub(re.escape(literal), template, text)
