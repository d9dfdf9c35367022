"""Traefik's ``defaultRule`` templates: the part of Go's text/template (and sprig) they use.

A default rule such as ``Host(`{{ normalize .Name }}.example.com`)`` is a Go template run
with the service's ``.Name`` and ``.Labels``. Switchyard evaluates actions made of fields
(``.Name``, ``.Labels.key``), string literals, pipelines (``|``), parentheses and a set of
string functions; anything else (``if``, ``range``, variables) is refused when the
provider is configured, naming what is not supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from switchyard.providers.flatkeys import normalize_name

__all__ = ["FUNCTIONS", "DefaultRule", "compile_default_rule"]


def _index(container: Any, *keys: Any) -> Any:
    for key in keys:
        container = container.get(key, "") if isinstance(container, Mapping) else ""
    return container


def _default(fallback: Any, value: Any = None) -> Any:
    return value if value not in (None, "", [], {}) else fallback


#: The functions a default rule may call, as Traefik names them (sprig's, plus normalize).
FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "normalize": lambda s: normalize_name(str(s)),
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "trim": lambda s: str(s).strip(),
    "trimPrefix": lambda prefix, s: str(s).removeprefix(str(prefix)),
    "trimSuffix": lambda suffix, s: str(s).removesuffix(str(suffix)),
    "trimAll": lambda cut, s: str(s).strip(str(cut)),
    "replace": lambda old, new, s: str(s).replace(str(old), str(new)),
    "index": _index,
    "default": _default,
    "quote": lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"',
}

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<field>(?:\.[A-Za-z_]\w*)+|\.)
                        |(?P<name>[A-Za-z_]\w*)|(?P<punct>[|()]))""", re.VERBOSE)


@dataclass(frozen=True)
class _Node:
    kind: str  # "string", "field", "call", "pipeline"
    value: Any


DefaultRule = Callable[[Mapping[str, Any]], str]


def compile_default_rule(template: str) -> DefaultRule:
    """The template as a function of its data (``{"Name": ..., "Labels": {...}}``).

    Raises ValueError naming the first construct Switchyard does not evaluate.
    """
    parts: list[str | _Node] = []
    position = 0
    for action in _ACTION.finditer(template):
        text = template[position:action.start()]
        if action.group(1):
            text = text.rstrip()
        parts.append(text)
        parts.append(_parse_action(action.group(2).strip(), action.group(0)))
        position = action.end()
        if action.group(3):
            rest = template[position:]
            position += len(rest) - len(rest.lstrip())
    tail = template[position:]
    if "{{" in tail:
        raise ValueError(f"unclosed action in {template!r}: add the closing }}}}")
    parts.append(tail)

    def render(data: Mapping[str, Any]) -> str:
        return "".join(part if isinstance(part, str) else _text(_evaluate(part, data))
                       for part in parts)

    return render


def _parse_action(source: str, shown: str) -> _Node:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(source):
        found = _TOKEN.match(source, position)
        if found is None or found.end() == position:
            raise ValueError(f"{shown}: cannot read {source[position:].strip()!r}; a default "
                             "rule uses fields (.Name, .Labels), strings and functions")
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind)))
        position = found.end()
        while position < len(source) and source[position].isspace():
            position += 1
    if not tokens:
        raise ValueError(f"{shown}: empty action")
    node, rest = _pipeline(tokens, shown)
    if rest:
        raise ValueError(f"{shown}: unexpected {rest[0][1]!r}")
    return node


def _pipeline(tokens: list[tuple[str, str]], shown: str) -> tuple[_Node, list[tuple[str, str]]]:
    commands = []
    while True:
        command, tokens = _command(tokens, shown)
        commands.append(command)
        if not tokens or tokens[0] != ("punct", "|"):
            return _Node("pipeline", commands), tokens
        tokens = tokens[1:]


def _command(tokens: list[tuple[str, str]], shown: str) -> tuple[_Node, list[tuple[str, str]]]:
    operands: list[_Node] = []
    while tokens and tokens[0] not in (("punct", "|"), ("punct", ")")):
        kind, text = tokens[0]
        tokens = tokens[1:]
        if kind == "string":
            operands.append(_Node("string", _unquote(text)))
        elif kind == "field":
            operands.append(_Node("field", [part for part in text.split(".") if part]))
        elif kind == "name":
            if text not in FUNCTIONS:
                raise ValueError(f"{shown}: {text!r} is not supported by Switchyard in a default "
                                 f"rule; use the functions {', '.join(FUNCTIONS)}")
            if operands:
                raise ValueError(f"{shown}: put the call to {text} in parentheses")
            operands.append(_Node("name", text))
        elif text == "(":
            inner, tokens = _pipeline(tokens, shown)
            if not tokens or tokens[0] != ("punct", ")"):
                raise ValueError(f"{shown}: missing )")
            tokens = tokens[1:]
            operands.append(inner)
        else:
            raise ValueError(f"{shown}: unexpected {text!r}")
    if not operands:
        raise ValueError(f"{shown}: empty command in a pipeline")
    if operands[0].kind != "name" and len(operands) > 1:
        raise ValueError(f"{shown}: only a function takes arguments")
    return _Node("call", operands), tokens


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return bytes(text[1:-1], "utf-8").decode("unicode_escape")


def _evaluate(node: _Node, data: Mapping[str, Any], piped: list[Any] | None = None) -> Any:
    if node.kind == "string":
        return node.value
    if node.kind == "field":
        value: Any = data
        for name in node.value:
            value = value.get(name, "") if isinstance(value, Mapping) else ""
        return value
    if node.kind == "pipeline":
        result: list[Any] | None = None
        for command in node.value:
            result = [_evaluate(command, data, result)]
        return result[0] if result else ""
    head, *operands = node.value
    if head.kind != "name":
        return _evaluate(head, data)
    arguments = [_evaluate(operand, data) for operand in operands] + (piped or [])
    try:
        return FUNCTIONS[head.value](*arguments)
    except TypeError:
        raise ValueError(f"{head.value}: wrong number of arguments ({len(arguments)})") from None


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(value.items())) + "]"
    return str(value)
