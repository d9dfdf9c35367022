"""Reading Traefik configuration files into models, with an issue per key the user got wrong."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from switchyard.config.dynamic import DynamicConfig, TraefikModel
from switchyard.config.static import StaticConfig, unimplemented_keys

__all__ = [
    "DYNAMIC_SECTIONS",
    "ConfigIssue",
    "ConfigLoadError",
    "config_files",
    "config_sections",
    "key_locations",
    "load_dynamic",
    "load_dynamic_from_dict",
    "load_static",
    "static_from_dict",
]

_M = TypeVar("_M", bound=TraefikModel)
# A key path as the user wrote it: mapping keys and list indices.
_Path = tuple[str | int, ...]

_CONFIG_EXTENSIONS = (".yml", ".yaml", ".toml")


@dataclass(frozen=True)
class ConfigIssue:
    """Something wrong or suspicious at one key of one configuration source."""

    source: str
    path: str
    message: str
    severity: str  # "error": the element at `path` was left out; "warning": it loaded
    line: int | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        at = f"{self.path}: " if self.path else ""
        return f"{where}: {self.severity}: {at}{self.message}"


class ConfigLoadError(Exception):
    """A configuration source that cannot be used at all; ``issues`` has the details."""

    def __init__(self, message: str, issues: Sequence[ConfigIssue] = ()) -> None:
        super().__init__(message)
        self.issues = list(issues)


# --- public API --------------------------------------------------------------------------


def load_static(
    path: str, overrides: Mapping[str, Any] | None = None
) -> tuple[StaticConfig, list[ConfigIssue]]:
    """Load a static configuration file; any invalid value is fatal, unknown keys are warnings.

    ``overrides`` (Traefik-style flags as a nested mapping) replace the file's values key by
    key before validation, and problems in them are reported with the source "flags".
    Dynamic sections (``tcp``, ``tls``, ...) in the file are left to the file provider: they
    are read when ``providers.file`` names this file, and reported as ignored otherwise.
    """
    document = _read_document(path)
    _STATIC_FILES.add(os.path.realpath(path))
    reader = _Reader(path, document.lines, document.issues, overrides or {}, document.data)
    return _static(_overlay(document.data, overrides or {}), reader)


def static_from_dict(raw: Mapping[str, Any], source: str) -> tuple[StaticConfig, list[ConfigIssue]]:
    """Validate a raw static configuration (flags, tests) the way ``load_static`` does."""
    return _static(raw, _Reader(source, {}, []))


def config_sections(path: str) -> tuple[list[str], list[str]]:
    """The top-level keys of a configuration file: (static ones, dynamic ones), as written."""
    data = _read_document(path).data
    return ([key for key in data if StaticConfig.alias_for(key) is not None],
            [key for key in data if key.lower() in DYNAMIC_SECTIONS])


def key_locations(path: str) -> dict[tuple[str | int, ...], int | None]:
    """Every key path of a configuration file (lower-cased) and its line (None in TOML)."""
    document = _read_document(path)
    found: dict[tuple[str | int, ...], int | None] = {}

    def walk(node: object, at: _Path) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                child = (*at, str(key).lower())
                found[child] = document.lines.get(child)
                walk(value, child)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                found[(*at, index)] = document.lines.get((*at, index))
                walk(item, (*at, index))

    walk(document.data, ())
    return found


def config_files(filename: str = "", directory: str = "") -> list[str]:
    """The files the file provider reads for these settings, in the order it reads them."""
    if directory:
        return _config_files(directory)
    return [filename] if filename else []


#: Top-level sections of a dynamic configuration, lower-cased.
DYNAMIC_SECTIONS = ("http", "tcp", "udp", "tls")

# Files this process loaded as its static configuration: the dynamic sections of such a file
# are expected next to static ones (a Traefik integration fixture holds both).
_STATIC_FILES: set[str] = set()


def _static(raw: Mapping[str, Any], reader: _Reader) -> tuple[StaticConfig, list[ConfigIssue]]:
    dynamic = [key for key in raw if key.lower() in DYNAMIC_SECTIONS]
    static_raw = {key: value for key, value in raw.items() if key not in dynamic}
    if dynamic and not static_raw:
        raise ConfigLoadError(
            f"{reader.source}: this looks like a dynamic configuration ({', '.join(dynamic)}), "
            "not a static one: it has no entryPoints, providers or other static key. Check it "
            f'on its own with "switchyard check {reader.source}"; to run it, pass the static '
            "file with -c and name this one in providers.file.filename"
        )
    try:
        config = StaticConfig.model_validate(static_raw)
    except ValidationError as error:
        fatal = [reader.validation_issue((), detail) for detail in _details(error)]
        listing = "\n".join(f"  {issue}" for issue in fatal)
        raise ConfigLoadError(
            f"{reader.source}: invalid static configuration:\n{listing}", fatal
        ) from None
    reader.unknown_keys(config, ())
    for path, message in unimplemented_keys(static_raw):
        reader.issue("warning", path, message)
    file_provider = config.providers.file
    if file_provider is not None and not (file_provider.filename or file_provider.directory):
        reader.issue(
            "warning",
            ("providers", "file"),
            "neither filename nor directory is set, so no dynamic configuration is read; set "
            "providers.file.filename (or --providers.file.filename=FILE)",
        )
    reads_itself = file_provider is not None and _names_file(
        file_provider.filename, file_provider.directory, reader.source
    )
    for key in dynamic if not reads_itself else ():
        reader.issue(
            "warning",
            (key,),
            f"the {key} section is dynamic configuration and is ignored here, because "
            f"providers.file does not read {reader.source}: move it to the dynamic file, or "
            f"set providers.file.filename to {reader.source}",
        )
    return config, reader.issues


def _names_file(filename: str, directory: str, path: str) -> bool:
    """Whether the file provider with these settings reads ``path``."""
    if not os.path.exists(path):
        return False
    target = os.path.realpath(path)
    if filename and os.path.realpath(filename) == target:
        return True
    if directory:
        root = os.path.realpath(directory)
        return os.path.commonpath([root, target]) == root
    return False


def _overlay(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied key by key; keys match case-insensitively."""
    merged = dict(base)
    for key, value in override.items():
        existing = next((k for k in merged if k.lower() == key.lower()), key)
        if isinstance(value, Mapping) and isinstance(merged.get(existing), Mapping):
            merged[existing] = _overlay(merged[existing], value)
        else:
            merged[existing] = value
    return merged


def _depth(tree: Mapping[str, Any], path: _Path) -> int:
    """How many leading parts of ``path`` ``tree`` holds (keys matched case-insensitively)."""
    node: object = tree
    for depth, part in enumerate(path):
        if not isinstance(node, Mapping):
            return depth
        key = next((k for k in node if str(k).lower() == str(part).lower()), None)
        if key is None:
            return depth
        node = node[key]
    return len(path)


def load_dynamic(
    filename: str = "", directory: str = ""
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """Load the file provider's dynamic configuration: one file, or a directory merged.

    Invalid elements are left out and reported; only an unreadable or unparsable
    file (or directory) raises ConfigLoadError, as Traefik then keeps its last
    good configuration. In a directory, the first file in sorted order wins a
    name defined twice.
    """
    if directory:
        loaded = [_read_dynamic_file(path) for path in _config_files(directory)]
        issues: list[ConfigIssue] = []
        if filename:
            issues.append(
                ConfigIssue(
                    directory,
                    "",
                    f'both filename and directory are set; the directory is used and "{filename}"'
                    " is ignored, as Traefik does",
                    "warning",
                )
            )
        config = _merge(DynamicConfig, loaded, ()) if loaded else DynamicConfig()
        # After the merge, which adds duplicate-name errors to the later files' readers.
        issues.extend(issue for reader, _ in loaded for issue in reader.issues)
        return config, issues
    if filename:
        reader, config = _read_dynamic_file(filename)
        return config, reader.issues
    raise ConfigLoadError("file provider: neither filename nor directory is set; set one of them")


def load_dynamic_from_dict(
    raw: Mapping[str, Any], source: str
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """Validate one provider's raw dynamic configuration element by element."""
    reader = _Reader(source, {}, [])
    config = reader.container(DynamicConfig, raw, ())
    return config, reader.issues


# --- reading files -----------------------------------------------------------------------


@dataclass
class _Document:
    data: dict[str, Any]
    lines: dict[_Path, int]  # lower-cased key path -> 1-based line (YAML only)
    issues: list[ConfigIssue]


def _read_document(path: str) -> _Document:
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise ConfigLoadError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigLoadError(f"{path}: not UTF-8 text ({error.reason})") from None
    if os.path.splitext(path)[1].lower() == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigLoadError(f"{path}: invalid TOML: {error}") from None
        document = _Document(data, {}, [])
    else:
        document = _parse_yaml(text, path)
    if not isinstance(document.data, dict):
        raise ConfigLoadError(
            f"{path}: the top level must be a mapping of keys, got {_describe(document.data)}"
        )
    return document


def _parse_yaml(text: str, path: str) -> _Document:
    loader: yaml.SafeLoader | None = None
    try:
        # Inside the try: the reader rejects control characters (\x18) as soon as it is built.
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        lines: dict[_Path, int] = {}
        issues: list[ConfigIssue] = []
        if node is not None:
            # Index the composed tree before construction flattens merge keys (<<) into it.
            _index_lines(node, (), lines, issues, path)
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        reason = "; ".join(part for part in (error.context, error.problem) if part)
        raise ConfigLoadError(f"{where}: invalid YAML: {reason}") from None
    except yaml.reader.ReaderError as error:
        before = text[: error.position]
        where = f"{path}:{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"
        raise ConfigLoadError(
            f"{where}: invalid YAML: character U+{int(error.character):04X} is not allowed in "
            "YAML; remove it (or write it as an escape inside double quotes)"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigLoadError(f"{path}: invalid YAML: {error}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return _Document(_string_keys(data), lines, issues)


def _index_lines(
    node: yaml.Node, path: _Path, lines: dict[_Path, int], issues: list[ConfigIssue], source: str
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                # PyYAML keeps the last value silently; Traefik's parser rejects the file.
                issues.append(
                    ConfigIssue(
                        source,
                        _format_path((*path, key)),
                        f'key "{key}" appears twice in this mapping (lines {seen[key]} and'
                        f" {line}); the last one is used",
                        "warning",
                        line,
                    )
                )
            seen[key] = line
            lines[(*path, key.lower())] = line
            _index_lines(value_node, (*path, key.lower()), lines, issues, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(item, (*path, index), lines, issues, source)


def _string_keys(value: Any) -> Any:
    # YAML allows `8080:` or `true:` as keys; Traefik names are always strings.
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def _config_files(directory: str) -> list[str]:
    """Configuration files under ``directory``, depth-first in name order like Go's ReadDir."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise ConfigLoadError(
            f"{directory}: cannot read directory: {error.strerror or error}"
        ) from None
    files: list[str] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # editor swap files, Kubernetes ConfigMap "..data" links
        if entry.is_dir(follow_symlinks=False):
            files.extend(_config_files(entry.path))
        elif os.path.splitext(entry.name)[1].lower() in _CONFIG_EXTENSIONS:
            files.append(entry.path)
    return files


def _read_dynamic_file(path: str) -> tuple[_Reader, DynamicConfig]:
    document = _read_document(path)
    reader = _Reader(path, document.lines, document.issues)
    data = document.data
    static_keys = [key for key in data if StaticConfig.alias_for(key) is not None]
    if static_keys:
        data = {key: value for key, value in data.items() if key not in static_keys}
        if not _holds_static_config(document.data, path):
            for key in static_keys:
                reader.issue(
                    "warning",
                    (key,),
                    f"{key} is static configuration and is ignored in a dynamic file: move it "
                    "to the static file (the one given with -c)",
                )
    return reader, reader.container(DynamicConfig, data, ())


def _holds_static_config(data: Mapping[str, Any], path: str) -> bool:
    """Whether a file read as dynamic configuration is also the static one (Traefik fixtures)."""
    if os.path.realpath(path) in _STATIC_FILES:
        return True
    settings = _lookup(data, "providers", "file")
    if not isinstance(settings, Mapping):
        return False
    filename, directory = _lookup(settings, "filename"), _lookup(settings, "directory")
    return _names_file(str(filename or ""), str(directory or ""), path)


def _lookup(data: Mapping[str, Any], *keys: str) -> Any:
    """``data[k1][k2]...`` with keys matched case-insensitively; None when absent."""
    node: Any = data
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = next((value for k, value in node.items() if str(k).lower() == key), None)
    return node


# --- validation --------------------------------------------------------------------------


@dataclass
class _Reader:
    """Validates one source, collecting issues with their key paths and lines."""

    source: str
    lines: Mapping[_Path, int]
    issues: list[ConfigIssue]
    # Flags applied over the file (``document``): a problem at a key they set, or below one
    # only they set, is theirs, not the file's.
    overrides: Mapping[str, Any] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=dict)

    def issue(self, severity: str, path: _Path, message: str) -> ConfigIssue:
        given = _depth(self.overrides, path)
        if given and given >= _depth(self.document, path):
            issue = ConfigIssue("flags", _format_path(path), message, severity)
        else:
            issue = ConfigIssue(
                self.source, _format_path(path), message, severity, self._line(path)
            )
        self.issues.append(issue)
        return issue

    def validation_issue(self, path: _Path, detail: ErrorDetails) -> ConfigIssue:
        return self.issue("error", (*path, *detail["loc"]), _readable(detail))

    def _line(self, path: _Path) -> int | None:
        key = tuple(part.lower() if isinstance(part, str) else part for part in path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def container(self, model: type[_M], raw: object, path: _Path) -> _M:
        """A section of named elements (``tcp``, ``tls``, the document): validated per element."""
        if raw is None:
            return model()
        if not isinstance(raw, Mapping):
            self.issue("error", path, f"expected a mapping, got {_describe(raw)}")
            return model()
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            alias = model.alias_for(str(key))
            if alias is None:
                self.issue("warning", (*path, str(key)), _unknown_key_message(model, str(key)))
                continue
            values[alias] = self._member(fields[alias].annotation, value, (*path, alias))
        return model.model_validate(values)

    def _member(self, annotation: Any, value: object, path: _Path) -> Any:
        kind, element_model = _member_kind(annotation)
        if kind == "section" and element_model is not None:
            return self.container(element_model, value, path)
        if value is None:
            return [] if kind == "list" else {}
        if kind == "list" and element_model is not None:
            if not isinstance(value, list):
                self.issue("error", path, f"expected a list, got {_describe(value)}")
                return []
            elements = (
                self._element(element_model, item, (*path, i)) for i, item in enumerate(value)
            )
            return [element for element in elements if element is not None]
        if not isinstance(value, Mapping):
            self.issue("error", path, f"expected a mapping, got {_describe(value)}")
            return {}
        if kind == "raw" or element_model is None:
            return dict(value)
        named: dict[str, TraefikModel] = {}
        for name, raw_element in value.items():
            if raw_element is None:
                # Traefik's decoder drops null values, so the element does not exist.
                self.issue("warning", (*path, str(name)), "empty definition is ignored")
                continue
            element = self._element(element_model, raw_element, (*path, str(name)))
            if element is not None:
                named[str(name)] = element
        return named

    def _element(self, model: type[_M], raw: object, path: _Path) -> _M | None:
        try:
            element = model.model_validate(raw)
        except ValidationError as error:
            for detail in _details(error):
                self.validation_issue(path, detail)
            return None
        self.unknown_keys(element, path)
        return element

    def unknown_keys(self, value: object, path: _Path) -> None:
        """Report every ignored key inside a validated model tree."""
        if isinstance(value, TraefikModel):
            for key in value.model_extra or {}:
                self.issue("warning", (*path, key), _unknown_key_message(type(value), key))
            for name, info in type(value).model_fields.items():
                self.unknown_keys(getattr(value, name), (*path, info.alias or name))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.unknown_keys(item, (*path, index))
        elif isinstance(value, dict):
            for key, item in value.items():
                self.unknown_keys(item, (*path, key))


def _member_kind(annotation: Any) -> tuple[str, type[TraefikModel] | None]:
    """How a container member is validated: "section", "named", "list" of elements, or "raw"."""
    if _is_model(annotation):
        return "section", annotation
    arguments = get_args(annotation)
    if get_origin(annotation) is dict and _is_model(arguments[1]):
        return "named", arguments[1]
    if get_origin(annotation) is list and _is_model(arguments[0]):
        return "list", arguments[0]
    return "raw", None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, TraefikModel)


def _details(error: ValidationError) -> list[ErrorDetails]:
    return error.errors(include_url=False, include_context=True)


# --- merging a directory -----------------------------------------------------------------


def _merge(model: type[_M], documents: list[tuple[_Reader, _M]], path: _Path) -> _M:
    """Merge per-file results; named elements: the first file wins, later ones are errors."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        parts = [(reader, getattr(document, name)) for reader, document in documents]
        kind, element_model = _member_kind(info.annotation)
        if kind == "section" and element_model is not None:
            values[alias] = _merge(element_model, parts, (*path, alias))
        elif kind == "list":
            values[alias] = [element for _, elements in parts for element in elements]
        else:
            # Raw sections (http, udp) hold a level of kinds before the names.
            values[alias] = _merge_named(parts, (*path, alias), nested=kind == "raw")
    return model.model_validate(values)


def _merge_named(
    parts: list[tuple[_Reader, Mapping[str, Any]]], path: _Path, nested: bool
) -> dict[str, Any]:
    grouped: dict[str, list[tuple[_Reader, Any]]] = {}
    for reader, mapping in parts:
        for name, value in mapping.items():
            grouped.setdefault(name, []).append((reader, value))
    merged: dict[str, Any] = {}
    for name, entries in grouped.items():
        if nested and all(isinstance(value, Mapping) for _, value in entries):
            merged[name] = _merge_named(entries, (*path, name), nested=False)
            continue
        (first, value), *later = entries
        merged[name] = value
        for reader, _ in later:
            reader.issue(
                "error",
                (*path, name),
                f"defined in both {first.source} and {reader.source};"
                f" the definition in {first.source} is used",
            )
    return merged


# --- messages ----------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _readable(detail: ErrorDetails) -> str:
    kind = detail["type"]
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_describe(detail['input'])}"
    if kind == "value_error":
        # Our validators' own messages already say what is wrong and what to write.
        return str(detail.get("ctx", {}).get("error", detail["msg"]))
    message = detail["msg"]
    return f"{message[:1].lower()}{message[1:]}, got {_describe(detail['input'])}"


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else f'{text[:56]}..."'
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return type(value).__name__


def _unknown_key_message(model: type[TraefikModel], key: str) -> str:
    known = {alias.lower(): alias for alias in model.known_keys()}
    close = difflib.get_close_matches(key.lower(), list(known), n=1, cutoff=0.6)
    hint = f'; did you mean "{known[close[0]]}"?' if close else ""
    return f'unknown key "{key}" is ignored{hint}'


def _format_path(path: _Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
