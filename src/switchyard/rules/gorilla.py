"""gorilla/mux route templates (``/users/{id:[0-9]+}``) as regexps, for the v2 rule syntax."""

from __future__ import annotations

from dataclasses import dataclass

# What Go's regexp.QuoteMeta escapes.
_QUOTE_META = str.maketrans({char: "\\" + char for char in "\\.+*?()|[]{}^$"})


def quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta: ``text`` as a regexp matching itself."""
    return text.translate(_QUOTE_META)


@dataclass(frozen=True, slots=True)
class Template:
    """A template's regexp, and its ``{name:pattern}`` variables in order."""

    pattern: str
    variables: tuple[tuple[str, str], ...]


def template_regexp(
    template: str, *, default: str, host: bool = False, prefix: bool = False, query: bool = False
) -> Template:
    """The regexp gorilla/mux builds for ``template``; ValueError when it is malformed.

    ``{name}`` stands for ``default``, ``{name:re}`` for ``re``; text between variables is
    literal. Host templates are case-insensitive; a prefix template is not anchored at the
    end; a query template ``key=`` with nothing after the ``=`` accepts any value.
    """
    parts = ["(?i)^" if host else "^"]
    variables: list[tuple[str, str]] = []
    literal_from = 0
    for start, end in _braces(template):
        name, colon, pattern = template[start + 1 : end - 1].partition(":")
        if not colon:
            pattern = default
        if not name or not pattern:
            raise ValueError(f"missing name or pattern in `{template[start:end]}`")
        parts.append(quote_meta(template[literal_from:start]))
        parts.append(f"(?:{pattern})")
        variables.append((name, pattern))
        literal_from = end
    parts.append(quote_meta(template[literal_from:]))
    if query and template.partition("=")[2] == "":
        parts.append(default)
    if not prefix:
        parts.append("$")
    return Template("".join(parts), tuple(variables))


def _braces(template: str) -> list[tuple[int, int]]:
    """Start and end (exclusive) of each top-level ``{...}``."""
    found: list[tuple[int, int]] = []
    depth = 0
    opened = 0
    for index, char in enumerate(template):
        if char == "{":
            depth += 1
            if depth == 1:
                opened = index
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced braces in `{template}`")
            if depth == 0:
                found.append((opened, index + 1))
    if depth != 0:
        raise ValueError(f"unbalanced braces in `{template}`")
    return found
