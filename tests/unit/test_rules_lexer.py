"""Go tokens of rule text: strings, comments, line breaks and what the scanner refuses."""

from __future__ import annotations

import pytest

from switchyard.rules import RuleError
from switchyard.rules.lexer import Token, TokenKind, tokenize

K = TokenKind


def kinds(rule: str) -> list[TokenKind]:
    return [token.kind for token in tokenize(rule)]


def string_value(literal: str) -> str:
    tokens = tokenize(literal)
    assert [t.kind for t in tokens] == [K.STRING, K.END]
    return tokens[0].value


def error_of(rule: str) -> RuleError:
    with pytest.raises(RuleError) as caught:
        tokenize(rule)
    return caught.value


def test_call_is_name_paren_string_paren_with_offsets() -> None:
    assert tokenize("HostSNI(`a.com`)") == [
        Token(K.NAME, 0, "HostSNI"),
        Token(K.LPAREN, 7, "("),
        Token(K.STRING, 8, "a.com"),
        Token(K.RPAREN, 15, ")"),
        Token(K.END, 16, ""),
    ]


def test_operators_are_recognised_with_maximal_munch() -> None:
    assert kinds("!a && b || c , ...") == [
        K.NOT,
        K.NAME,
        K.AND,
        K.NAME,
        K.OR,
        K.NAME,
        K.COMMA,
        K.ELLIPSIS,
        K.END,
    ]


def test_spaces_tabs_and_carriage_returns_are_free() -> None:
    assert kinds(" \tHostSNI \r( `a`\t)\r ") == [K.NAME, K.LPAREN, K.STRING, K.RPAREN, K.END]


def test_raw_string_keeps_backslashes_and_newlines() -> None:
    assert string_value("`a\\.b\\n`") == "a\\.b\\n"
    assert string_value("`a\nb`") == "a\nb"


def test_raw_string_drops_carriage_returns_like_go() -> None:
    assert string_value("`a\r\nb\r`") == "a\nb"


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"foo\x2ecom"', "foo.com"),
        (r'"caf\u00e9"', "café"),
        (r'"\U0001F600"', "\U0001f600"),
        (r'"a\056b"', "a.b"),
        (r'"\n\t\r"', "\n\t\r"),
        (r'"\a\b\f\v"', "\a\b\f\v"),
        (r'"back\\slash"', "back\\slash"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"\xc3\xa9"', "é"),  # bytes that form UTF-8 are that character
        ('"plain é"', "plain é"),
        ('"tab\tinside"', "tab\tinside"),
    ],
)
def test_double_quoted_strings_decode_every_go_escape(literal: str, value: str) -> None:
    assert string_value(literal) == value


def test_escaped_bytes_that_are_not_utf8_become_surrogate_escapes() -> None:
    # The same decoding as ALPN names taken from a ClientHello, so the two compare equal.
    assert string_value(r'"\xff"') == b"\xff".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("literal", "column"),
    [
        (r'"a\qb"', 3),
        (r'"\'"', 2),
        (r'"\x2"', 2),
        (r'"\0"', 2),
        (r'"\400"', 2),
        (r'"\ud800"', 2),
        (r'"\U00110000"', 2),
        (r'"\u12"', 2),
    ],
)
def test_invalid_escapes_are_refused_at_the_backslash(literal: str, column: int) -> None:
    error = error_of(literal)
    assert error.column == column
    assert "escape" in error.problem


def test_single_quotes_are_refused_with_a_hint() -> None:
    error = error_of("HostSNI('a')")
    assert str(error) == (
        "rule HostSNI('a'): column 9: single quotes are not allowed, use backticks or double quotes"
    )


def test_multi_character_single_quotes_are_refused_the_same_way() -> None:
    assert "single quotes" in error_of("HostSNI('example.com')").problem


@pytest.mark.parametrize(
    ("rule", "column", "words"),
    [
        ("HostSNI(`a)", 9, "missing closing backtick"),
        ('HostSNI("a)', 9, "not terminated"),
        ('HostSNI("a\nb")', 9, "not terminated"),
        ('HostSNI("a\\\nb")', 9, "not terminated"),
        ("HostSNI(`a`) /* open", 14, "comment is not terminated"),
    ],
)
def test_unterminated_strings_and_comments_are_refused(rule: str, column: int, words: str) -> None:
    error = error_of(rule)
    assert error.column == column
    assert words in error.problem


def test_comments_are_skipped() -> None:
    assert kinds("/* lead */HostSNI/* mid */(`a`) // tail") == [
        K.NAME,
        K.LPAREN,
        K.STRING,
        K.RPAREN,
        K.NEWLINE,
        K.END,
    ]


def test_comment_markers_inside_strings_are_text() -> None:
    assert string_value("`/* not a comment */`") == "/* not a comment */"
    assert string_value('"// nor this"') == "// nor this"


@pytest.mark.parametrize("before", ["HostSNI", "`a`", '"a"', ")"])
def test_line_break_after_name_string_or_closing_paren_is_a_token(before: str) -> None:
    assert kinds(before + "\n")[-2:] == [K.NEWLINE, K.END]


@pytest.mark.parametrize("before", ["(", ",", "&&", "||", "!", "..."])
def test_line_break_after_an_operator_is_plain_whitespace(before: str) -> None:
    assert K.NEWLINE not in kinds(before + "\n")


def test_only_one_line_break_token_per_run_of_blank_lines() -> None:
    assert kinds("a\n\n\n") == [K.NAME, K.NEWLINE, K.END]


def test_block_comment_spanning_lines_acts_as_a_line_break() -> None:
    assert kinds("a /* x\n y */ b") == [K.NAME, K.NEWLINE, K.NAME, K.END]


def test_block_comment_on_one_line_does_not_end_the_line() -> None:
    assert kinds("a /* x */ b") == [K.NAME, K.NAME, K.END]


def test_line_comment_after_a_name_ends_the_line() -> None:
    assert kinds("a // x\nb") == [K.NAME, K.NEWLINE, K.NAME, K.END]


def test_unicode_identifier_is_one_name() -> None:
    assert tokenize("HostSNIé(")[0] == Token(K.NAME, 0, "HostSNIé")


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("HostSNI(`a`);", "';' is not allowed"),
        ("HostSNI(1)", "numbers are not allowed"),
        ("HostSNI(.5)", "numbers are not allowed"),
        ("a & b", "use '&&'"),
        ("a | b", "use '||'"),
        ("a == b", "'=' is not supported"),
        ("x.HostSNI", "'.' is not supported"),
        ("a[0]", "'[' is not supported"),
        ("-a", "'-' is not supported"),
        ("a\u00a0b", "U+00A0"),
        ("a\fb", "U+000C"),
        ("a@b", "unexpected character"),
    ],
)
def test_characters_outside_the_rule_language_are_refused(rule: str, words: str) -> None:
    assert words in error_of(rule).problem


@pytest.mark.parametrize("rule", ["HostSNI(`a\x00`)", "a\x00", "/* \x00 */ a"])
def test_nul_is_refused_anywhere(rule: str) -> None:
    assert "NUL" in error_of(rule).problem


def test_byte_order_mark_is_skipped_at_the_start_only() -> None:
    assert kinds("\ufeffHostSNI") == [K.NAME, K.END]
    error = error_of("HostSNI(`\ufeff`)")
    assert error.column == 10
    assert "byte order mark" in error.problem


def test_lone_surrogates_are_invalid_utf8() -> None:
    assert "UTF-8" in error_of("HostSNI(`\udcff`)").problem


def test_empty_text_is_just_the_end() -> None:
    assert tokenize("") == [Token(K.END, 0, "")]
