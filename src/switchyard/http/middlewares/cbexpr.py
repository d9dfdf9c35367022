"""The circuitBreaker's trip condition: Traefik's expression language, parsed and evaluated.

An expression is Go expression syntax over three metric functions::

    NetworkErrorRatio() > 0.30 || ResponseCodeRatio(500, 600, 0, 600) > 0.25
    LatencyAtQuantileMS(50.0) > 100 && NetworkErrorRatio() >= 0.5

The rules are those of the library Traefik evaluates it with (vulcand/predicate over Go's
parser): ``||`` binds looser than ``&&``, which binds looser than the comparisons ``==``, ``!=``,
``<``, ``<=``, ``>``, ``>=``; parentheses group. A comparison has a metric on its left and a
literal on its right, of the metric's own kind: the ratios compare with a float literal
(``0.5``, ``1.``, ``.5``, ``1e-3``), ``LatencyAtQuantileMS`` (whole milliseconds) with an integer
literal. ``ResponseCodeRatio`` takes four integer literals (``[from, to)`` over
``[dividedByFrom, dividedByTo)``), ``LatencyAtQuantileMS`` one float literal (a percentile,
``50.0`` is the median). Anything else (``!``, arithmetic, a bare metric, an unknown function)
is refused when the middleware is built, as Traefik refuses it.

:func:`parse` is pure: text in, a :class:`Condition` tree out (or :class:`ExpressionError`
naming the column and what to write instead). A Condition is evaluated against any
:class:`Metrics`; ``&&`` and ``||`` stop at the first operand that decides, so a latency
histogram is only read when the expression needs it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

__all__ = ["And", "Compare", "Condition", "ExpressionError", "Metric", "Metrics", "Or",
           "parse"]

_INT_MAX = 2**63 - 1  # Go's strconv.Atoi on 64-bit machines


class ExpressionError(ValueError):
    """An expression Traefik would refuse; the message says where and what to write."""


class Metrics(Protocol):
    """What a circuit breaker measured over its rolling window."""

    def network_error_ratio(self) -> float: ...
    def response_code_ratio(self, start_a: int, end_a: int, start_b: int, end_b: int) -> float: ...
    def latency_at_quantile_ms(self, quantile: float) -> int: ...


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric function call: ``name`` and its literal arguments."""

    name: str
    args: tuple[int | float, ...] = ()

    @property
    def integral(self) -> bool:
        """Whether the metric is a whole number (compared with integer literals)."""
        return self.name == "LatencyAtQuantileMS"

    def value(self, metrics: Metrics) -> int | float:
        if self.name == "NetworkErrorRatio":
            return metrics.network_error_ratio()
        if self.name == "ResponseCodeRatio":
            a, b, c, d = self.args
            return metrics.response_code_ratio(int(a), int(b), int(c), int(d))
        return metrics.latency_at_quantile_ms(float(self.args[0]))

    def __str__(self) -> str:
        return f"{self.name}({', '.join(_literal_text(arg) for arg in self.args)})"


@dataclass(frozen=True, slots=True)
class Compare:
    """``metric <op> literal``."""

    metric: Metric
    op: str
    literal: int | float

    def evaluate(self, metrics: Metrics) -> bool:
        value, literal, op = self.metric.value(metrics), self.literal, self.op
        if op == ">":
            return value > literal
        if op == ">=":
            return value >= literal
        if op == "<":
            return value < literal
        if op == "<=":
            return value <= literal
        if op == "==":
            return value == literal
        return value != literal

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {_literal_text(self.literal)}"


@dataclass(frozen=True, slots=True)
class And:
    left: Condition
    right: Condition

    def evaluate(self, metrics: Metrics) -> bool:
        return self.left.evaluate(metrics) and self.right.evaluate(metrics)

    def __str__(self) -> str:
        return f"{_grouped(self.left, Or)} && {_grouped(self.right, Or, And)}"


@dataclass(frozen=True, slots=True)
class Or:
    left: Condition
    right: Condition

    def evaluate(self, metrics: Metrics) -> bool:
        return self.left.evaluate(metrics) or self.right.evaluate(metrics)

    def __str__(self) -> str:
        return f"{self.left} || {_grouped(self.right, Or)}"


Condition = Compare | And | Or


def _grouped(condition: Condition, *kinds: type) -> str:
    return f"({condition})" if isinstance(condition, kinds) else str(condition)


def _literal_text(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    return text if "." in text or "e" in text else text + ".0"


# -- tokens ------------------------------------------------------------------------------------

# Go's numeric literal shapes (decimal and prefixed, with underscores), so that a literal Go
# would read as one token is one token here, and then refused or accepted as Traefik does.
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[bBoO][0-9_]*"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]*)?")
_IDENT = re.compile(r"[^\W\d]\w*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|\'(?:[^\'\\\n]|\\.)*\'')
_OPERATORS = ("&&", "||", "==", "!=", "<=", ">=", "&^", "<<", ">>", "<", ">", "!", "+", "-",
              "*", "/", "%", "&", "|", "^", "(", ")", ",")
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "&", "|", "^", "&^", "<<", ">>"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "ident", "string", "op", "end"
    text: str
    column: int  # 1-based, as Go's parser counts


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in " \t\r\n":
            index += 1
            continue
        column = index + 1
        for kind, pattern in (("number", _NUMBER), ("ident", _IDENT), ("string", _STRING)):
            match = pattern.match(text, index)
            if match and match.end() > index:
                found.append(_Token(kind, match.group(), column))
                index = match.end()
                break
        else:
            operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
            if operator is None:
                raise ExpressionError(f"column {column}: unexpected character {char!r}")
            found.append(_Token("op", operator, column))
            index += len(operator)
    found.append(_Token("end", "", len(text) + 1))
    return found


# -- grammar -----------------------------------------------------------------------------------

# What a sub-expression is while parsing: a condition, a metric, or a literal value.
_Value = Compare | And | Or | Metric | int | float | str

_SIGNATURES: dict[str, tuple[type, ...]] = {
    "NetworkErrorRatio": (),
    "ResponseCodeRatio": (int, int, int, int),
    "LatencyAtQuantileMS": (float,),
}
_USAGE = {
    "NetworkErrorRatio": "NetworkErrorRatio() takes no arguments",
    "ResponseCodeRatio": "ResponseCodeRatio takes four integers, e.g. "
                         "ResponseCodeRatio(500, 600, 0, 600)",
    "LatencyAtQuantileMS": "LatencyAtQuantileMS takes one float percentile, e.g. "
                           "LatencyAtQuantileMS(50.0)",
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def advance(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.token
        if token.kind != "op" or token.text != text:
            raise ExpressionError(f"column {token.column}: expected {text!r}, found "
                                  f"{_shown(token)}")
        return self.advance()

    # Precedence climbing over Go's binary operator levels.
    def binary(self, level: int) -> tuple[_Value, int]:
        left, column = self.unary()
        while True:
            token = self.token
            op_level = _level(token)
            if op_level == 0 or op_level < level:
                return left, column
            self.advance()
            right, right_column = self.binary(op_level + 1)
            left = _combine(token, left, column, right, right_column)

    def unary(self) -> tuple[_Value, int]:
        token = self.token
        if token.kind == "op" and token.text in ("!", "-", "+", "^", "&", "*"):
            self.advance()
            self.unary()
            hint = ("negate the comparison instead (> becomes <=)" if token.text == "!"
                    else "literals are non-negative numbers" if token.text == "-"
                    else "write a metric, a comparison and a literal")
            raise ExpressionError(f"column {token.column}: the unary {token.text!r} operator is "
                                  f"not supported; {hint}")
        return self.primary()

    def primary(self) -> tuple[_Value, int]:
        token = self.advance()
        if token.kind == "op" and token.text == "(":
            value, _ = self.binary(1)
            self.expect(")")
            return value, token.column
        if token.kind == "number":
            return _number(token), token.column
        if token.kind == "string":
            return token.text, token.column
        if token.kind == "ident":
            if self.token.kind == "op" and self.token.text == "(":
                return self.call(token), token.column
            raise ExpressionError(
                f"column {token.column}: {token.text} is not defined; the functions are "
                "NetworkErrorRatio(), ResponseCodeRatio(from, to, dividedByFrom, dividedByTo) "
                "and LatencyAtQuantileMS(quantile)")
        raise ExpressionError(f"column {token.column}: expected a metric, a literal or '(', "
                              f"found {_shown(token)}")

    def call(self, name: _Token) -> Metric:
        self.expect("(")
        args: list[_Value] = []
        columns: list[int] = []
        if not (self.token.kind == "op" and self.token.text == ")"):
            while True:
                columns.append(self.token.column)
                args.append(self.argument())
                if self.token.kind == "op" and self.token.text == ",":
                    self.advance()
                    continue
                break
        self.expect(")")
        signature = _SIGNATURES.get(name.text)
        if signature is None:
            raise ExpressionError(
                f"column {name.column}: unsupported function {name.text}; use "
                "NetworkErrorRatio, ResponseCodeRatio or LatencyAtQuantileMS")
        if len(args) != len(signature):
            raise ExpressionError(f"column {name.column}: {name.text} got {len(args)} "
                                  f"argument(s); {_USAGE[name.text]}")
        for arg, kind, column in zip(args, signature, columns, strict=True):
            if type(arg) is not kind:
                raise ExpressionError(f"column {column}: {name.text} got {_kind(arg)}; "
                                      f"{_USAGE[name.text]}")
        return Metric(name.text, tuple(arg for arg in args if isinstance(arg, int | float)))

    def argument(self) -> _Value:
        # Traefik evaluates each argument on its own: a literal or another call, nothing else.
        token = self.advance()
        if token.kind == "number":
            return _number(token)
        if token.kind == "string":
            return token.text
        if token.kind == "ident" and self.token.kind == "op" and self.token.text == "(":
            return self.call(token)
        raise ExpressionError(f"column {token.column}: a function argument must be a literal "
                              f"number, found {_shown(token)}")


def _level(token: _Token) -> int:
    if token.kind != "op":
        return 0
    text = token.text
    if text == "||":
        return 1
    if text == "&&":
        return 2
    if text in _COMPARISONS:
        return 3
    if text in ("+", "-", "|", "^"):
        return 4
    if text in ("*", "/", "%", "<<", ">>", "&", "&^"):
        return 5
    return 0


def _combine(op: _Token, left: _Value, left_column: int, right: _Value,
             right_column: int) -> _Value:
    if op.text in _ARITHMETIC:
        raise ExpressionError(f"column {op.column}: the {op.text!r} operator is not supported; "
                              "compare a metric with a literal, e.g. NetworkErrorRatio() > 0.5")
    if op.text in ("&&", "||"):
        for operand, column in ((left, left_column), (right, right_column)):
            if not isinstance(operand, Compare | And | Or):
                raise ExpressionError(
                    f"column {column}: {op.text} joins comparisons, found {_kind(operand)}; "
                    "write e.g. NetworkErrorRatio() > 0.5")
        assert isinstance(left, Compare | And | Or) and isinstance(right, Compare | And | Or)
        return And(left, right) if op.text == "&&" else Or(left, right)
    if not isinstance(left, Metric):
        raise ExpressionError(f"column {left_column}: the left side of {op.text} must be a "
                              f"metric, found {_kind(left)}; put the metric first, e.g. "
                              "NetworkErrorRatio() > 0.5")
    wanted = int if left.integral else float
    if type(right) is not wanted:
        example = "an integer (milliseconds), e.g. > 100" if left.integral else \
            "a float, e.g. > 0.5 (write 1.0, not 1)"
        raise ExpressionError(f"column {right_column}: {left.name} is compared with "
                              f"{_kind(right)}; it needs {example}")
    assert isinstance(right, int | float)
    return Compare(left, op.text, right)


def _number(token: _Token) -> int | float:
    text = token.text
    if "_" in text or text[:2].lower() in ("0x", "0b", "0o"):
        raise ExpressionError(f"column {token.column}: cannot read the number {text}; write "
                              "plain decimal digits")
    if "." in text or "e" in text.lower():
        try:
            value = float(text)
        except ValueError:
            raise ExpressionError(f"column {token.column}: cannot read the number "
                                  f"{text}") from None
        if math.isinf(value):
            raise ExpressionError(f"column {token.column}: the number {text} is out of range")
        return value
    number = int(text)  # leading zeros are decimal to Traefik's literal reader (Atoi)
    if number > _INT_MAX:
        raise ExpressionError(f"column {token.column}: the number {text} is out of range")
    return number


def _kind(value: _Value) -> str:
    if isinstance(value, Compare | And | Or):
        return f"the condition {value}"
    if isinstance(value, Metric):
        return f"the metric {value}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {_literal_text(value)}"
    return f"the string {value}"


def _shown(token: _Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


def parse(text: str) -> Condition:
    """The condition ``text`` describes; ExpressionError when Traefik would refuse it."""
    if not text.strip():
        raise ExpressionError("the expression is empty; write e.g. NetworkErrorRatio() > 0.5")
    parser = _Parser(text)
    value, column = parser.binary(1)
    if parser.token.kind != "end":
        raise ExpressionError(f"column {parser.token.column}: unexpected "
                              f"{_shown(parser.token)} after a complete expression")
    if not isinstance(value, Compare | And | Or):
        raise ExpressionError(f"column {column}: the expression must be a condition, found "
                              f"{_kind(value)}; compare it, e.g. NetworkErrorRatio() > 0.5")
    return value
