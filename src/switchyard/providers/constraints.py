"""Traefik's provider constraint language: Label/LabelRegex (Docker) or Tag/TagRegex (Consul)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from switchyard.rules.errors import RuleError
from switchyard.rules.lexer import Token, TokenKind, tokenize

__all__ = ["LABEL_FUNCTIONS", "TAG_FUNCTIONS", "Constraint", "Functions",
           "compile_constraints", "compile_tag_constraints"]

S = TypeVar("S")

#: A compiled expression: does this container's labels (or service's tags) match?
Constraint = Callable[[Mapping[str, str]], bool]


@dataclass(frozen=True)
class Function(Generic[S]):
    """One function of the language: its argument count and how it becomes a predicate."""

    arity: int
    build: Callable[[list[Token], str], Callable[[S], bool]]


Functions = Mapping[str, Function[S]]


def _pattern(token: Token, text: str) -> re.Pattern[str]:
    try:
        return re.compile(token.value)
    except re.error as error:
        raise RuleError(text, token.offset, f"invalid regular expression: {error}") from None


def _label(args: list[Token], text: str) -> Callable[[Mapping[str, str]], bool]:
    key, value = args[0].value, args[1].value
    return lambda labels: labels.get(key) == value


def _label_regex(args: list[Token], text: str) -> Callable[[Mapping[str, str]], bool]:
    key, pattern = args[0].value, _pattern(args[1], text)
    return lambda labels: key in labels and pattern.search(labels[key]) is not None


def _tag(args: list[Token], text: str) -> Callable[[Sequence[str]], bool]:
    wanted = args[0].value
    return lambda tags: wanted in tags


def _tag_regex(args: list[Token], text: str) -> Callable[[Sequence[str]], bool]:
    pattern = _pattern(args[0], text)
    # Go's MatchString: a match anywhere in the tag, as re.search.
    return lambda tags: any(pattern.search(tag) is not None for tag in tags)


LABEL_FUNCTIONS: Functions[Mapping[str, str]] = {
    "Label": Function(2, _label), "LabelRegex": Function(2, _label_regex)}
TAG_FUNCTIONS: Functions[Sequence[str]] = {
    "Tag": Function(1, _tag), "TagRegex": Function(1, _tag_regex)}


def compile_constraints(expression: str) -> Constraint:
    """The Docker form: ``Label(`k`, `v`)``, ``LabelRegex(`k`, `re`)``, ! && || ().

    Raises ValueError with the position of the problem.
    """
    return _compile(expression, LABEL_FUNCTIONS)


def compile_tag_constraints(expression: str) -> Callable[[Sequence[str]], bool]:
    """The Consul Catalog form: ``Tag(`t`)``, ``TagRegex(`re`)``, ! && || ().

    Raises ValueError with the position of the problem.
    """
    return _compile(expression, TAG_FUNCTIONS)


def _compile(expression: str, functions: Functions[S]) -> Callable[[S], bool]:
    if not expression.strip():
        return lambda subject: True
    try:
        return _Parser(expression, functions).parse()
    except RuleError as error:
        raise ValueError(str(error).replace("rule ", "constraints ", 1)) from None


class _Parser(Generic[S]):
    def __init__(self, text: str, functions: Functions[S]) -> None:
        self.text = text
        self.functions = functions
        self.tokens = [t for t in tokenize(text) if t.kind is not TokenKind.NEWLINE]
        self.pos = 0

    def take(self, kind: TokenKind) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not kind:
            raise RuleError(self.text, token.offset, f"expected {kind.value}, found "
                            f"{token.value or token.kind.value}")
        self.pos += 1
        return token

    def peek(self) -> TokenKind:
        return self.tokens[self.pos].kind

    def parse(self) -> Callable[[S], bool]:
        predicate = self.parse_or()
        self.take(TokenKind.END)
        return predicate

    def parse_or(self) -> Callable[[S], bool]:
        operands = [self.parse_and()]
        while self.peek() is TokenKind.OR:
            self.take(TokenKind.OR)
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else (
            lambda subject: any(operand(subject) for operand in operands))

    def parse_and(self) -> Callable[[S], bool]:
        operands = [self.parse_unary()]
        while self.peek() is TokenKind.AND:
            self.take(TokenKind.AND)
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else (
            lambda subject: all(operand(subject) for operand in operands))

    def parse_unary(self) -> Callable[[S], bool]:
        if self.peek() is TokenKind.NOT:
            self.take(TokenKind.NOT)
            inner = self.parse_unary()
            return lambda subject: not inner(subject)
        if self.peek() is TokenKind.LPAREN:
            self.take(TokenKind.LPAREN)
            inner = self.parse_or()
            self.take(TokenKind.RPAREN)
            return inner
        return self.parse_call()

    def parse_call(self) -> Callable[[S], bool]:
        name = self.take(TokenKind.NAME)
        function = self.functions.get(name.value)
        if function is None:
            raise RuleError(self.text, name.offset, f"unknown function {name.value}: "
                            f"constraints use {' and '.join(self.functions)}")
        self.take(TokenKind.LPAREN)
        args = [self.take(TokenKind.STRING)]
        while len(args) < function.arity:
            self.take(TokenKind.COMMA)
            args.append(self.take(TokenKind.STRING))
        self.take(TokenKind.RPAREN)
        return function.build(args, self.text)
