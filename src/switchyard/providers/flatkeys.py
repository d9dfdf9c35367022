"""Traefik's flat key/value form (labels, KV paths) decoded into nested dicts for the loader."""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

from switchyard.config.dynamic import TraefikModel
from switchyard.config.loader import ConfigIssue

__all__ = [
    "Segment",
    "canonical",
    "ci_get",
    "decode",
    "kv_path",
    "label_path",
    "normalize_name",
    "parse_bool",
]

#: One step of a key path: a name, or a list index (``[0]`` in labels, ``/0`` in KV).
Segment = str | int

_LABEL_PART = re.compile(r"^(?P<name>[^\[\]]+)(?P<indexes>(?:\[\d+\])*)$")
_INDEX = re.compile(r"\[(\d+)\]")

# Go's strconv.ParseBool, which Traefik's decoder uses for every boolean.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool | None:
    """Go's ParseBool: True, False, or None when ``text`` is not a boolean."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def label_path(key: str) -> tuple[Segment, ...]:
    """``tcp.routers.r.tls.domains[0].sans`` -> its segments; ValueError for a malformed key."""
    segments: list[Segment] = []
    for part in key.split("."):
        found = _LABEL_PART.match(part)
        if found is None:
            raise ValueError(
                "each dot-separated part must be a name, optionally followed by list indexes"
                " such as domains[0]"
            )
        segments.append(found["name"])
        segments.extend(int(index) for index in _INDEX.findall(found["indexes"]))
    return tuple(segments)


def kv_path(key: str) -> tuple[Segment, ...]:
    """``tcp/routers/r/entrypoints/0`` -> its segments; all-digit parts are list indexes."""
    # A trailing slash is tolerated, as Traefik's KV decoder trims it.
    parts = key.removesuffix("/").split("/")
    if any(not part for part in parts):
        raise ValueError("the key has an empty path segment (two slashes in a row)")
    return tuple(int(part) if part.isdigit() else part for part in parts)


@dataclass
class _Node:
    value: str | None = None
    # Lower-cased name (or index) -> (name as first written, child). Traefik merges keys that
    # differ only in case and keeps the spelling of the first key in sorted order.
    children: dict[Segment, tuple[Segment, _Node]] = field(default_factory=dict)


def decode(
    pairs: Mapping[str, str],
    split: Callable[[str], tuple[Segment, ...]],
    source: str,
    shown: Callable[[str], str] = lambda key: key,
) -> tuple[dict[str, Any], list[ConfigIssue]]:
    """Nest flat ``pairs`` into dicts and lists; each key that cannot be placed is an issue.

    ``split`` turns a key into segments (``label_path`` or ``kv_path``); ``shown`` is how a
    key is named in issues (with the prefix the user wrote). Values stay text: the models
    convert them, and split comma lists, as Traefik's decoder does.
    """
    issues: list[ConfigIssue] = []
    root = _Node()
    for key in sorted(pairs):
        try:
            segments = split(key)
        except ValueError as error:
            issues.append(ConfigIssue(source, shown(key), f"key ignored: {error}", "error"))
            continue
        node = root
        for segment in segments:
            lookup = segment.lower() if isinstance(segment, str) else segment
            node = node.children.setdefault(lookup, (segment, _Node()))[1]
        node.value = pairs[key]
    tree = _to_python(root, (), source, shown, issues)
    return (tree if isinstance(tree, dict) else {}), issues


def _to_python(
    node: _Node,
    path: tuple[Segment, ...],
    source: str,
    shown: Callable[[str], str],
    issues: list[ConfigIssue],
) -> Any:
    if not node.children:
        return node.value if node.value is not None else ""
    where = shown(_join(path))
    if node.value is not None and parse_bool(node.value) is not True:
        # `tls=true` beside `tls.passthrough=true` is the usual way to switch a section on;
        # any other value next to sub-keys says nothing the sub-keys do not.
        issues.append(ConfigIssue(source, where, f"value {node.value!r} ignored: the key also"
                                  " has sub-keys, which define it", "warning"))
    named = {name: child for name, child in node.children.values() if isinstance(name, str)}
    indexed = {i: child for i, child in node.children.values() if isinstance(i, int)}
    if named and indexed:
        issues.append(ConfigIssue(source, where, "list indexes and names are mixed under this"
                                  " key; the indexed entries are ignored", "error"))
    if indexed and not named:
        # Indexes order the list; gaps (0, 2) simply close up.
        return [_to_python(indexed[i], (*path, i), source, shown, issues) for i in sorted(indexed)]
    return {name: _to_python(child, (*path, name), source, shown, issues)
            for name, child in named.items()}


def _join(path: tuple[Segment, ...]) -> str:
    text = ""
    for segment in path:
        text += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if text else segment)
    return text


def canonical(raw: Any, model: type[TraefikModel]) -> Any:
    """Shape decoded text for ``model``: canonical key spellings, ``tls=true`` sections.

    Flat forms can only say "this section exists" with a boolean (``tls=true``), so a
    section given a true value becomes an empty mapping and a false one is dropped. Known
    keys get their canonical spelling so providers can read them; names (routers,
    services) and unknown keys are left as written for the loader to report.
    """
    return _shape(raw, model)


def _shape(value: Any, annotation: Any) -> Any:
    model = _model_of(annotation)
    if model is not None:
        if isinstance(value, str) and parse_bool(value) is not None:
            return {} if parse_bool(value) else None
        if not isinstance(value, Mapping):
            return value
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        shaped: dict[str, Any] = {}
        for key, item in value.items():
            alias = model.alias_for(str(key))
            if alias is None:
                shaped[str(key)] = item
                continue
            result = _shape(item, fields[alias].annotation)
            if result is not None:
                shaped[alias] = result
        return shaped
    origin, arguments = get_origin(annotation), get_args(annotation)
    if origin is dict and isinstance(value, Mapping) and _model_of(arguments[1]) is not None:
        return {name: _shape(item, arguments[1]) for name, item in value.items()}
    if origin is list and isinstance(value, list) and _model_of(arguments[0]) is not None:
        return [_shape(item, arguments[0]) for item in value]
    return value


def _model_of(annotation: Any) -> type[TraefikModel] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        found = [m for m in (_model_of(arg) for arg in get_args(annotation)) if m is not None]
        return found[0] if found else None
    if isinstance(annotation, type) and issubclass(annotation, TraefikModel):
        return annotation
    return None


def ci_get(mapping: Mapping[str, Any], key: str) -> tuple[str, Any] | None:
    """The (key as written, value) whose key equals ``key`` ignoring case, if any."""
    lowered = key.lower()
    for name, value in mapping.items():
        if name.lower() == lowered:
            return name, value
    return None



def normalize_name(name: str) -> str:
    """Traefik's provider.Normalize: runs of anything but letters and digits become one ``-``."""
    return "-".join(part for part in re.split(r"[\W_]+", name) if part)
