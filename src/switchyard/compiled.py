"""Which Switchyard modules this install runs as mypyc-compiled extensions (see setup.py)."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _extensions() -> dict[str, Path]:
    suffixes = tuple(EXTENSION_SUFFIXES)
    found = {}
    for path in _PACKAGE.rglob("*"):
        if path.name.endswith(suffixes):
            stem = path.name.split(".", 1)[0]
            found[".".join((*path.relative_to(_PACKAGE.parent).parent.parts, stem))] = path
    return found


def compiled_modules() -> list[str]:
    """Dotted names of the modules loaded from a compiled extension, sorted; [] when pure.

    Python's import picks an extension over the ``.py`` beside it, so a module is compiled
    exactly when such a file sits next to its source; nothing is imported to find out.
    """
    return sorted(_extensions())


def stale_modules() -> list[str]:
    """Compiled modules whose source changed after the build: the extension, not the edit,
    is what runs (an in-place build, `make compiled`, is not redone by editing)."""
    stale = []
    for name, extension in _extensions().items():
        source = extension.with_name(extension.name.split(".", 1)[0] + ".py")
        # A second's margin: unpacking a wheel writes both files at nearly the same time.
        if source.exists() and source.stat().st_mtime > extension.stat().st_mtime + 1:
            stale.append(name)
    return sorted(stale)


def describe() -> str:
    """One line for `switchyard version` and the start-up log."""
    names = compiled_modules()
    if not names:
        return "pure Python"
    short = ", ".join(name.removeprefix("switchyard.") for name in names)
    stale = stale_modules()
    if stale:
        short += f"; stale: {', '.join(name.removeprefix('switchyard.') for name in stale)}"
    return f"mypyc-compiled: {short}"
