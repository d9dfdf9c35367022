"""Where the static configuration comes from: a file, flags or environment variables, as Traefik picks."""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from switchyard.config.dynamic import TraefikModel
from switchyard.config.loader import ConfigIssue, ConfigLoadError, load_static, static_from_dict
from switchyard.config.static import StaticConfig

__all__ = [
    "ENV_PREFIXES",
    "StaticSource",
    "discover_static_file",
    "env_settings",
    "flag_settings",
    "read_static",
    "search_paths",
    "tree_from_settings",
]

#: Environment variable prefixes read as static configuration; the later one wins a key both set.
ENV_PREFIXES = ("TRAEFIK_", "SWITCHYARD_")

# Traefik's search order: directories first, then extensions within each directory.
_SEARCH_DIRS = ("/etc/traefik", "$XDG_CONFIG_HOME", "$HOME/.config", ".")
_EXTENSIONS = ("toml", "yaml", "yml")

#: One setting: where it came from (the flag or variable as written), its key path, its value.
Setting = tuple[str, tuple[str, ...], str]


@dataclass(frozen=True)
class StaticSource:
    """The one source the static configuration was read from, and what was left unread."""

    kind: str  # "file", "flags", "environment" or "none"
    path: str = ""  # the file, for "file"
    ignored: tuple[str, ...] = ()  # flags or variables present but not read

    def __str__(self) -> str:
        return f"file {self.path}" if self.kind == "file" else self.kind


def search_paths(environ: Mapping[str, str]) -> list[str]:
    """The files Traefik looks for when no configuration file is named, in its order."""
    paths: list[str] = []
    for directory in _SEARCH_DIRS:
        # As Go's os.ExpandEnv: an unset variable is empty, so "$XDG_CONFIG_HOME/traefik"
        # becomes "/traefik" when it is unset.
        expanded = directory.replace("$XDG_CONFIG_HOME", environ.get("XDG_CONFIG_HOME", ""))
        expanded = expanded.replace("$HOME", environ.get("HOME", ""))
        paths.extend(f"{expanded}/traefik.{extension}" for extension in _EXTENSIONS)
    return paths


def discover_static_file(environ: Mapping[str, str]) -> str | None:
    """The first of ``search_paths`` that exists, as an absolute path; None if there is none."""
    for path in search_paths(environ):
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def flag_settings(args: Sequence[str]) -> list[Setting]:
    """``--a.b.c=v``, ``--a.b.c v`` and ``--a.b.c`` (true) as settings; ValueError if malformed.

    ``name[0]`` addresses a list element, as in ``--entryPoints.web.http.tls.domains[0].main``.
    """
    settings: list[Setting] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or len(arg) <= 2:
            raise ValueError(f"unexpected argument {arg!r}: flags look like "
                             "--entryPoints.web.address=:80")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if index + 1 < len(args) and not args[index + 1].startswith("--"):
                value = args[index + 1]
                index += 1
            else:
                value = "true"
        path: list[str] = []
        for part in key.split("."):
            name, bracket, rest = part.partition("[")
            path.append(name)
            if bracket and rest.endswith("]") and rest[:-1].isdigit():
                path.append(rest[:-1])
            elif bracket:
                raise ValueError(f"flag --{key}: write a list index as name[0]")
        if any(not part for part in path):
            raise ValueError(f"flag --{key}: empty name between dots")
        settings.append((f"--{key}", tuple(path), value))
        index += 1
    return settings


def env_settings(environ: Mapping[str, str]) -> list[Setting]:
    """The ``TRAEFIK_*`` and ``SWITCHYARD_*`` variables that name a static configuration key.

    As Traefik does, only variables whose first part is a top-level key count
    (``TRAEFIK_ENTRYPOINTS_...``, ``TRAEFIK_LOG_LEVEL``), so ``SWITCHYARD_SPLICE`` and the
    like stay process settings. Names are lower-cased and split on ``_``: an entry point
    defined this way has a lower-case name, and a name with ``_`` in it cannot be written.
    """
    roots = {key.lower() for key in StaticConfig.known_keys()}
    settings: list[Setting] = []
    for prefix in ENV_PREFIXES:
        for variable in sorted(environ):
            if not variable.startswith(prefix):
                continue
            path = tuple(variable[len(prefix):].lower().split("_"))
            if path[0] in roots:
                settings.append((variable, path, environ[variable]))
    return settings


def tree_from_settings(settings: Iterable[Setting], source: str) -> dict[str, Any]:
    """The nested mapping the settings describe, with Traefik's meaning of ``true`` and ``false``.

    ``--api``, ``--providers.docker=true``, ``TRAEFIK_PING=true`` switch a section on with
    its defaults, and ``=false`` leaves it off; a later ``--providers.docker.network=x``
    adds to the section. Numeric parts (``domains[0]``, ``..._DOMAINS_0_MAIN``) build lists.
    """
    tree: dict[str, Any] = {}
    for origin, path, value in settings:
        section = _is_section(path)
        node = tree
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None and child is not True:
                    raise ConfigLoadError(f"{source}: {origin} sets a key below "
                                          f"{'.'.join(path[:depth + 1])}, which has a value")
                child = node[part] = {}
            node = child
        last = path[-1]
        lowered = value.strip().lower()
        if section and lowered in ("true", "false"):
            if lowered == "false":
                node.pop(last, None)
            elif not isinstance(node.get(last), dict):
                node[last] = {}
            continue
        if isinstance(node.get(last), dict):
            if lowered == "true":
                continue  # "on" for a section its sub-keys already switched on
            raise ConfigLoadError(f"{source}: {origin} gives a value to {'.'.join(path)}, "
                                  "which other settings fill with keys")
        node[last] = {"true": True, "false": False}.get(lowered, value)
    return _numbered_lists(tree, ())


def _numbered_lists(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in node.items():
        child = (*path, key)
        if isinstance(value, dict):
            value = _numbered_lists(value, child)
            if value and all(k.isdigit() for k in value) and not _is_named_map(child):
                value = [value[k] for k in sorted(value, key=int)]
        converted[key] = value
    return converted


def _annotation(path: tuple[str, ...]) -> Any:
    """The type the static configuration gives ``path``; Any below untyped mappings."""
    current: Any = StaticConfig
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, TraefikModel):
            alias = current.alias_for(part)
            if alias is None:
                return Any
            current = next(info.annotation for name, info in current.model_fields.items()
                           if (info.alias or name) == alias)
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return Any
    return _unwrap(current)


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        return options[0] if len(options) == 1 else annotation
    return annotation


def _is_section(path: tuple[str, ...]) -> bool:
    """Whether ``path`` holds a sub-object (a typed section or a raw one such as docker)."""
    annotation = _annotation(path)
    return annotation is not Any and (
        (isinstance(annotation, type) and issubclass(annotation, TraefikModel))
        or get_origin(annotation) is dict or annotation is dict)


def _is_named_map(path: tuple[str, ...]) -> bool:
    annotation = _annotation(path)
    return get_origin(annotation) is dict and get_args(annotation)[1] is not Any


def _from_variables(variables: list[Setting]) -> tuple[StaticConfig, list[ConfigIssue]]:
    """``static_from_dict`` over the variables, each problem naming the variable to fix."""

    def named(issue: ConfigIssue) -> ConfigIssue:
        at = tuple(issue.path.lower().replace("[", ".").replace("]", "").split("."))
        origins = [name for name, path, _ in variables if path[:len(at)] == at]
        if not origins:
            return issue
        return dataclasses.replace(issue, message=f"{issue.message} (set by {origins[-1]})")

    try:
        static, issues = static_from_dict(tree_from_settings(variables, "environment"),
                                          "environment")
    except ConfigLoadError as error:
        found = [named(issue) for issue in error.issues]
        listing = "\n".join(f"  {issue}" for issue in found)
        raise ConfigLoadError(f"environment: invalid static configuration:\n{listing}",
                              found) from None
    return static, [named(issue) for issue in issues]


def read_static(
    configfile: str | None, flags: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[StaticConfig, list[ConfigIssue], StaticSource]:
    """The static configuration from the one source Traefik would read, and what is wrong in it.

    A configuration file (``-c``, else the first of ``search_paths``) wins, then flags,
    then ``TRAEFIK_*`` / ``SWITCHYARD_*`` variables; the sources after the chosen one are
    not read, and a warning names them. Flags given together with ``-c`` still override
    the file's keys (Switchyard's addition: Traefik ignores them).
    Raises ConfigLoadError when the chosen source cannot be used.
    """
    environ = os.environ if environ is None else environ
    variables = env_settings(environ)
    path = configfile or discover_static_file(environ)
    try:
        parsed = flag_settings(flags)
    except ValueError as error:
        raise ConfigLoadError(str(error)) from None
    overrides = tree_from_settings(parsed, "flags")
    if configfile:
        source = StaticSource("file", configfile, tuple(name for name, _, _ in variables))
        static, issues = load_static(configfile, overrides)
    elif path:
        # A file found where Traefik looks wins over flags, as in Traefik.
        source = StaticSource("file", path, tuple(origin for origin, _, _ in parsed + variables))
        static, issues = load_static(path)
    elif parsed:
        source = StaticSource("flags", "", tuple(name for name, _, _ in variables))
        static, issues = static_from_dict(overrides, "flags")
    elif variables:
        source = StaticSource("environment")
        static, issues = _from_variables(variables)
    else:
        return StaticConfig(), [], StaticSource("none")
    if source.ignored:
        issues.append(ConfigIssue(
            "flags" if source.ignored[0].startswith("--") else "environment", "",
            f"{', '.join(source.ignored)} ignored: the static configuration "
            f"is read from {source}, and as in Traefik only one source is read (a file, else "
            "flags, else environment variables); move these settings there", "warning"))
    return static, issues, source
