"""Turn rule text into a matcher tree, accepting exactly the Go expressions Traefik accepts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from switchyard.rules.errors import RuleError
from switchyard.rules.lexer import Token, TokenKind, tokenize

MATCHER_NAMES = ("HostSNI", "HostSNIRegexp", "ClientIP", "ALPN")


@dataclass(frozen=True)
class MatcherSet:
    """The matcher names one rule language accepts, and how it explains a name it does not.

    ``foreign`` maps lower-cased names of other languages or syntaxes (HTTP matchers in a TCP
    rule, say) to what they are, for the "unsupported function" message.
    """

    kind: str
    names: tuple[str, ...]
    example: str
    foreign: Mapping[str, str] = field(default_factory=dict)
    spellings_of: Mapping[str, tuple[str, ...]] = field(init=False, repr=False)
    canonical: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Traefik registers each matcher under four spellings only: as declared, lower, UPPER
        # and Title-case of the lowered name (pkg/rules/parser.go); any other casing is unknown.
        spellings_of = {
            name: tuple(dict.fromkeys((name, name.lower(), name.upper(), name.lower().capitalize())))
            for name in self.names
        }
        object.__setattr__(self, "spellings_of", spellings_of)
        object.__setattr__(
            self,
            "canonical",
            {spelling: name for name, spellings in spellings_of.items() for spelling in spellings},
        )

    def unknown(self, spelled: str) -> str:
        """Why ``spelled`` is not a matcher of this set, and what to write instead."""
        problem = f"unsupported function {spelled}"
        for name in self.names:
            if spelled.lower() == name.lower():
                spellings = self.spellings_of[name]
                return f"{problem}: {name} can only be spelled {', '.join(spellings)}"
        listed = ", ".join(self.names[:-1]) + " and " + self.names[-1]
        what = self.foreign.get(spelled.lower())
        if what is not None:
            return f"{problem}: {spelled} is {what}; {self.kind} rules use {listed}"
        return f"{problem}: {self.kind} rules use {listed}"


_HTTP_MATCHERS = (
    "Host",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "PathRegexp",
    "Method",
    "Header",
    "HeaderRegexp",
    "Headers",
    "HeadersRegexp",
    "Query",
    "QueryRegexp",
)

TCP_MATCHERS = MatcherSet(
    "TCP",
    MATCHER_NAMES,
    "HostSNI(`example.com`)",
    {name.lower(): "an HTTP matcher" for name in _HTTP_MATCHERS},
)

# Go accepts nesting up to 100,000 levels; a recursive-descent parser in Python cannot, and no
# real rule comes near this.
MAX_NESTING = 100


@dataclass(frozen=True, slots=True)
class MatcherCall:
    """A matcher leaf. ``name`` is canonical (``HostSNI`` for ``HOSTSNI``); ``negated`` holds
    every ``!`` that applied to it once negation has been pushed down to the leaves."""

    name: str
    args: tuple[str, ...]
    offset: int
    arg_offsets: tuple[int, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class AllOf:
    """``&&`` of two or more operands, none of which is itself an AllOf."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """``||`` of two or more operands, none of which is itself an AnyOf."""

    operands: tuple[Node, ...]


Node: TypeAlias = MatcherCall | AllOf | AnyOf


def parse(rule: str, matchers: MatcherSet = TCP_MATCHERS) -> Node:
    """Parse ``rule`` into a tree with negations on the leaves; raise RuleError.

    Only the syntax and the matcher names (those of ``matchers``) are checked here; argument
    counts and values are the matchers' business (Traefik's ParseHostSNI relies on that split).
    """
    return _Parser(rule, matchers).parse_rule()


def negate(node: Node) -> Node:
    """De Morgan down to the leaves, as Traefik's ``invert`` does; ``!!x`` is ``x``."""
    if isinstance(node, MatcherCall):
        return MatcherCall(node.name, node.args, node.offset, node.arg_offsets, not node.negated)
    operands = tuple(negate(operand) for operand in node.operands)
    return AnyOf(operands) if isinstance(node, AllOf) else AllOf(operands)


def host_sni_args(node: Node) -> tuple[str, ...]:
    """Every HostSNI argument, left to right, whatever the negations and other matchers."""
    if isinstance(node, MatcherCall):
        return node.args if node.name == "HostSNI" else ()
    return tuple(arg for operand in node.operands for arg in host_sni_args(operand))


class _Parser:
    """Recursive descent over Go's precedence: ``||`` < ``&&`` < unary ``!`` < call/paren."""

    __slots__ = ("depth", "matchers", "pos", "rule", "tokens")

    def __init__(self, rule: str, matchers: MatcherSet) -> None:
        self.rule = rule
        self.matchers = matchers
        self.tokens = tokenize(rule)
        self.pos = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, token: Token, problem: str) -> RuleError:
        if token.kind is TokenKind.NEWLINE:
            problem = (
                f"{problem}: in Go syntax a line break right after ')', a name or a string ends "
                "the rule; put '&&', '||' or ',' at the end of the line instead of the start "
                "of the next one"
            )
        return RuleError(self.rule, token.offset, problem)

    def unexpected(self, token: Token, wanted: str) -> RuleError:
        found = token.kind.value
        if token.kind is TokenKind.NAME:
            found = f"'{token.value}'"
        return self.error(token, f"expected {wanted}, found {found}")

    def parse_rule(self) -> Node:
        if self.peek().kind is TokenKind.END:
            raise RuleError(self.rule, 0, "empty rule")
        node = self.parse_or()
        token = self.advance()
        if token.kind is TokenKind.NEWLINE and self.peek().kind is TokenKind.END:
            return node  # the line break Go's scanner reports at the very end
        if token.kind is not TokenKind.END:
            raise self.unexpected(token, "'&&', '||' or the end of the rule")
        return node

    def parse_or(self) -> Node:
        operands = _flat(AnyOf, self.parse_and())
        while self.peek().kind is TokenKind.OR:
            self.advance()
            operands.extend(_flat(AnyOf, self.parse_and()))
        return operands[0] if len(operands) == 1 else AnyOf(tuple(operands))

    def parse_and(self) -> Node:
        operands = _flat(AllOf, self.parse_unary())
        while self.peek().kind is TokenKind.AND:
            self.advance()
            operands.extend(_flat(AllOf, self.parse_unary()))
        return operands[0] if len(operands) == 1 else AllOf(tuple(operands))

    def parse_unary(self) -> Node:
        # A loop rather than recursion, so a long run of '!' costs no stack.
        negations = 0
        while self.peek().kind is TokenKind.NOT:
            self.advance()
            negations += 1
        node = self.parse_operand()
        return negate(node) if negations % 2 else node

    def parse_operand(self) -> Node:
        token = self.advance()
        if token.kind is TokenKind.LPAREN:
            if self.depth == MAX_NESTING:
                raise self.error(token, f"parentheses nest deeper than {MAX_NESTING} levels")
            self.depth += 1
            node = self.parse_or()
            self.depth -= 1
            self.expect_closing(token)
            return node
        if token.kind is TokenKind.NAME:
            return self.parse_call(token)
        if token.kind is TokenKind.STRING:
            raise self.error(
                token,
                f"a string is not a matcher: write a matcher call such as {self.matchers.example}",
            )
        raise self.unexpected(token, f"a matcher such as {self.matchers.example}, '!' or '('")

    def expect_closing(self, opening: Token) -> None:
        token = self.advance()
        if token.kind is not TokenKind.RPAREN:
            raise self.unexpected(token, f"')' closing the '(' at column {opening.offset + 1}")

    def parse_call(self, name_token: Token) -> MatcherCall:
        spelled = name_token.value
        if self.peek().kind is not TokenKind.LPAREN:
            raise self.unexpected(self.peek(), f"'(' after {spelled}")
        name = self.matchers.canonical.get(spelled)
        if name is None:
            raise self.error(name_token, self.matchers.unknown(spelled))
        opening = self.advance()
        args: list[str] = []
        offsets: list[int] = []
        # Go's argument list: strings separated by commas, an optional trailing comma, and an
        # optional '...' after the last argument (ignored by Traefik's rule engine).
        while self.peek().kind is not TokenKind.RPAREN:
            token = self.advance()
            if token.kind is not TokenKind.STRING:
                raise self.error(token, _bad_argument(token, spelled))
            args.append(token.value)
            offsets.append(token.offset)
            spread = self.peek().kind is TokenKind.ELLIPSIS
            if spread:
                self.advance()
            if self.peek().kind is TokenKind.COMMA:
                self.advance()
            elif self.peek().kind is not TokenKind.RPAREN:
                raise self.unexpected(self.peek(), f"',' or ')' in the arguments of {spelled}")
            if spread:
                break
        self.expect_closing(opening)
        return MatcherCall(name, tuple(args), name_token.offset, tuple(offsets))


def _flat(kind: type[AllOf | AnyOf], node: Node) -> list[Node]:
    """The operands ``node`` contributes to a chain of ``kind``; keeps chains one level deep."""
    return list(node.operands) if isinstance(node, kind) else [node]


def _bad_argument(token: Token, matcher: str) -> str:
    if token.kind is TokenKind.NAME:
        return (
            f"arguments of {matcher} must be strings in backticks or double quotes, "
            f"not the name {token.value}"
        )
    if token.kind is TokenKind.END:
        return f"missing ')' after the arguments of {matcher}"
    return f"expected a string argument for {matcher}, found {token.kind.value}"
