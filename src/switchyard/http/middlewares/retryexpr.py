"""The `buffering` middleware's ``retryExpression`` language (vulcand/oxy's buffer predicates).

``IsNetworkError()`` (the last attempt answered 502 or 504), ``Attempts()``, ``ResponseCode()``
and ``RequestMethod()`` compared with constants (``Attempts() <= 2``, ``RequestMethod() ==
"GET"``), joined with ``&&`` and ``||`` (``&&`` binds tighter) and parentheses. As in oxy, the
function is always on the left of a comparison, ``<``-style operators take numbers only, and
there is no ``!``. Parsing is pure; the result is a function of :class:`RetryContext`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryContext", "RetryPredicate", "parse_retry_expression"]


@dataclass(frozen=True, slots=True)
class RetryContext:
    method: str
    attempt: int
    status: int


RetryPredicate = Callable[[RetryContext], bool]

_TOKENS = re.compile(r"""\s*(?:(?P<op>&&|\|\||==|!=|<=|>=|<|>|\(|\)|,)|(?P<int>[0-9]+)
                         |(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<name>[A-Za-z_][A-Za-z0-9_]*))""",
                     re.VERBOSE)

_INT_FUNCTIONS: dict[str, Callable[[RetryContext], int]] = {
    "Attempts": lambda context: context.attempt,
    "ResponseCode": lambda context: context.status,
}
_STR_FUNCTIONS: dict[str, Callable[[RetryContext], str]] = {
    "RequestMethod": lambda context: context.method,
}
_COMPARE: dict[str, Callable[[object, object], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _is_network_error(context: RetryContext) -> bool:
    return context.status in (502, 504)


class _Mapper:
    __slots__ = ("kind", "read")

    def __init__(self, kind: type, read: Callable[[RetryContext], object]) -> None:
        self.kind = kind
        self.read = read


_Value = RetryPredicate | _Mapper | int | str


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKENS.match(text, position)
        if match is None:
            raise ValueError(f"unexpected {text[position:].strip()[:10]!r} at offset {position}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token == ("op", value):
            self.index += 1
            return True
        return False

    def expression(self) -> _Value:
        left = self.conjunction()
        while self.take("||"):
            left = _join(left, self.conjunction(), any_of=True)
        return left

    def conjunction(self) -> _Value:
        left = self.comparison()
        while self.take("&&"):
            left = _join(left, self.comparison(), any_of=False)
        return left

    def comparison(self) -> _Value:
        left = self.operand()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARE:
            self.index += 1
            return _compare(left, token[1], self.operand())
        return left

    def operand(self) -> _Value:
        token = self.peek()
        if token is None:
            raise ValueError("the expression ends too early")
        self.index += 1
        kind, text = token
        if kind == "int":
            return int(text)
        if kind == "str":
            return text[1:-1].encode("latin-1", "backslashreplace").decode(
                "unicode_escape") if text[0] == '"' else text[1:-1]
        if (kind, text) == ("op", "("):
            inner = self.expression()
            if not self.take(")"):
                raise ValueError("a parenthesis is not closed")
            return inner
        if kind == "name":
            if not self.take("("):
                raise ValueError(f"{text} must be called as {text}()")
            if not self.take(")"):
                raise ValueError(f"{text}() takes no arguments")
            if text == "IsNetworkError":
                return _is_network_error
            if text in _INT_FUNCTIONS:
                return _Mapper(int, _INT_FUNCTIONS[text])
            if text in _STR_FUNCTIONS:
                return _Mapper(str, _STR_FUNCTIONS[text])
            raise ValueError(f"unsupported function {text}() (use IsNetworkError(), "
                             "Attempts(), ResponseCode() or RequestMethod())")
        raise ValueError(f"unexpected {text!r}")


def _predicate(value: _Value) -> RetryPredicate:
    if isinstance(value, (_Mapper, int, str)):
        # The user's expression is wrong, not a Python type: ValueError like every parse error.
        raise ValueError(  # noqa: TRY004
            "expected a condition (a comparison or IsNetworkError()), got a value")
    return value


def _join(left: _Value, right: _Value, *, any_of: bool) -> RetryPredicate:
    first, second = _predicate(left), _predicate(right)
    if any_of:
        return lambda context: first(context) or second(context)
    return lambda context: first(context) and second(context)


def _compare(left: _Value, operator: str, right: _Value) -> RetryPredicate:
    if not isinstance(left, _Mapper):
        raise ValueError(  # noqa: TRY004
            f"the left side of {operator} must be Attempts(), ResponseCode() or RequestMethod()")
    if isinstance(right, (_Mapper,)) or callable(right):
        raise ValueError(f"the right side of {operator} must be a constant")  # noqa: TRY004
    if type(right) is not left.kind:
        raise ValueError(f"expected {left.kind.__name__}, got {type(right).__name__} "
                         f"after {operator}")
    if left.kind is str and operator not in ("==", "!="):
        raise ValueError(f"{operator} compares numbers only")
    read, test, constant = left.read, _COMPARE[operator], right
    return lambda context: test(read(context), constant)


def parse_retry_expression(text: str) -> RetryPredicate:
    """The predicate ``text`` describes; ValueError says what is wrong with it."""
    parser = _Parser(text)
    result = parser.expression()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()[1]!r} after a complete expression")  # type: ignore[index]
    return _predicate(result)
