"""Split rule text into Go tokens, the way Go's scanner does for Traefik's rule parser."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from switchyard.rules.errors import RuleError


class TokenKind(enum.Enum):
    """The only Go tokens a rule can use; the value is how error messages name them."""

    NAME = "a name"
    STRING = "a string"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    NOT = "'!'"
    AND = "'&&'"
    OR = "'||'"
    ELLIPSIS = "'...'"
    NEWLINE = "a line break"
    END = "the end of the rule"


@dataclass(frozen=True, slots=True)
class Token:
    """``value`` is the name, the decoded string, or the operator text."""

    kind: TokenKind
    offset: int
    value: str


_OPERATORS = {
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    ",": TokenKind.COMMA,
    "!": TokenKind.NOT,
    "&&": TokenKind.AND,
    "||": TokenKind.OR,
    "...": TokenKind.ELLIPSIS,
}

# Go whitespace is exactly space, tab, CR and LF. Identifiers: a letter or '_' then letters,
# digits or '_' (Unicode); no matcher is spelled outside ASCII, so the exact Unicode classes
# do not change what is accepted. A backslash-newline inside a double-quoted string is left
# unmatched on purpose: Go rejects it.
_TOKEN = re.compile(
    r"""
    (?P<blank>[ \t\r]+)
    |(?P<newline>\n)
    |(?P<name>[^\W\d]\w*)
    |(?P<raw>`[^`]*`)
    |(?P<quoted>"[^"\\\n]*(?:\\.[^"\\\n]*)*")
    |(?P<line_comment>//[^\n]*)
    |(?P<block_comment>/\*(?s:.*?)\*/)
    |(?P<operator>&&|\|\||\.\.\.|[(),!])
    """,
    re.VERBOSE,
)

# Escapes for re to read, not characters in the literal: mypyc cannot compile a str
# constant holding lone surrogates.
_ILLEGAL = re.compile(r"[\x00\ufeff\ud800-\udfff]")

_ESCAPE = re.compile(
    r"""\\(?:
    (?P<simple>[abfnrtv\\"])
    |x(?P<hex>[0-9A-Fa-f]{2})
    |(?P<octal>[0-7]{3})
    |u(?P<u4>[0-9A-Fa-f]{4})
    |U(?P<u8>[0-9A-Fa-f]{8})
    )""",
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}

_UNSUPPORTED_OPERATORS = frozenset("=<>+-*/%^~?:.[]{}")


def tokenize(rule: str) -> list[Token]:
    """Return the tokens of ``rule``, ending with an END token; raise RuleError."""
    _check_characters(rule)
    tokens: list[Token] = []
    # Go skips a byte order mark only at the very start of the source.
    pos = 1 if rule.startswith("\ufeff") else 0
    end = len(rule)
    # Go's automatic semicolon insertion: a line ending right after a name, a literal or ')'
    # ends the statement. ParseExpr accepts that only at the very end of the rule, so the
    # parser sees it as a NEWLINE token that is legal only before END.
    line_may_end = False
    match = _TOKEN.match
    while pos < end:
        found = match(rule, pos)
        if found is None:
            raise RuleError(rule, pos, _describe_bad_start(rule, pos))
        group = found.lastgroup
        text = found.group()
        if group == "name":
            tokens.append(Token(TokenKind.NAME, pos, text))
            line_may_end = True
        elif group == "raw":
            # Go drops carriage returns from raw string values.
            tokens.append(Token(TokenKind.STRING, pos, text[1:-1].replace("\r", "")))
            line_may_end = True
        elif group == "quoted":
            tokens.append(Token(TokenKind.STRING, pos, _unquote(rule, pos, text)))
            line_may_end = True
        elif group == "operator":
            kind = _OPERATORS[text]
            tokens.append(Token(kind, pos, text))
            line_may_end = kind is TokenKind.RPAREN
        elif group == "blank" or (group == "block_comment" and "\n" not in text):
            pass
        elif line_may_end:
            # A newline, a // comment (it runs to the end of the line) or a /* */ comment
            # spanning lines all end the line.
            tokens.append(Token(TokenKind.NEWLINE, pos, "\n"))
            line_may_end = False
        pos = found.end()
    tokens.append(Token(TokenKind.END, end, ""))
    return tokens


def _check_characters(rule: str) -> None:
    """Reject what Go's scanner refuses anywhere, even inside strings and comments."""
    found = _ILLEGAL.search(rule, 1 if rule.startswith("\ufeff") else 0)
    if found is None:
        return
    char = found.group()
    if char == "\x00":
        problem = "NUL characters are not allowed"
    elif char == "\ufeff":
        problem = "a byte order mark (U+FEFF) is only allowed at the very start"
    else:
        problem = f"invalid UTF-8: lone surrogate U+{ord(char):04X}"
    raise RuleError(rule, found.start(), problem)


def _describe_bad_start(rule: str, pos: int) -> str:
    """Say why no token starts at ``pos``."""
    char = rule[pos]
    if char == "`":
        return "string is not terminated: missing closing backtick"
    if char == '"':
        return (
            "string is not terminated on its line: missing closing '\"' "
            "(use backticks for a string that spans lines)"
        )
    if char == "'":
        return "single quotes are not allowed, use backticks or double quotes"
    if rule.startswith("/*", pos):
        return "comment is not terminated: missing '*/'"
    if char == ";":
        return "';' is not allowed: a rule is a single expression"
    if char.isdigit() or (char == "." and rule[pos + 1 : pos + 2].isdigit()):
        return "numbers are not allowed: matcher arguments are strings in backticks or quotes"
    if char == "&":
        return "'&' is not supported, use '&&'"
    if char == "|":
        return "'|' is not supported, use '||'"
    if char in _UNSUPPORTED_OPERATORS:
        return (
            f"'{char}' is not supported: a rule combines matcher calls with "
            "'!', '&&', '||' and parentheses"
        )
    return f"unexpected character {char!r} (U+{ord(char):04X})"


def _unquote(rule: str, offset: int, literal: str) -> str:
    """Decode a Go interpreted string literal (quotes included) found at ``offset``."""
    body = literal[1:-1]
    if "\\" not in body:
        return body
    # \x and octal escapes produce raw bytes, so the value is assembled as bytes; bytes that
    # are not UTF-8 survive as surrogate escapes, the way ALPN names from a ClientHello do.
    out = bytearray()
    pos = 0
    while (slash := body.find("\\", pos)) >= 0:
        out += body[pos:slash].encode()
        escape = _ESCAPE.match(body, slash)
        if escape is None:
            raise RuleError(
                rule,
                offset + 1 + slash,
                f"invalid escape sequence {body[slash : slash + 2]} in a double-quoted "
                "string; use backticks for text with literal backslashes",
            )
        if (simple := escape["simple"]) is not None:
            out.append(_SIMPLE_ESCAPES[simple])
        elif (hex_byte := escape["hex"]) is not None:
            out.append(int(hex_byte, 16))
        elif (octal := escape["octal"]) is not None:
            value = int(octal, 8)
            if value > 0xFF:
                raise RuleError(rule, offset + 1 + slash, f"octal escape \\{octal} is above \\377")
            out.append(value)
        else:
            code_point = int(escape["u4"] or escape["u8"], 16)
            if code_point > 0x10FFFF or 0xD800 <= code_point <= 0xDFFF:
                raise RuleError(
                    rule,
                    offset + 1 + slash,
                    f"escape sequence {escape.group()} is not a valid Unicode code point",
                )
            out += chr(code_point).encode()
        pos = escape.end()
    out += body[pos:].encode()
    return out.decode("utf-8", "surrogateescape")
