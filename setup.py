"""Optional mypyc build of the hot pure modules; pyproject.toml holds everything else.

A plain ``pip install .`` or ``pip install -e .`` builds nothing and installs pure Python,
as before. With ``SWITCHYARD_COMPILE=1``, and mypy (which ships mypyc), a C compiler and
Python's headers at hand, the modules in COMPILED are compiled as well; Python then imports
each extension in place of the ``.py`` beside it. When one of those is missing the install
says why on stderr and stays pure Python. pip's isolated build environment has no mypy,
hence ``--no-build-isolation`` (which wants setuptools 70.1 or later, or the wheel package):

    pip install mypy
    SWITCHYARD_COMPILE=1 pip install --no-build-isolation -e .    # or: make compiled
    make pure                                                      # back to pure Python

`switchyard version` (and the start-up log) says which modules are compiled.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import setup

# The sans-IO parsers and the routing decision: what every connection runs before it is
# relayed, plus the rule language, which a reload runs for every router. They are written
# for mypy --strict and need nothing dynamic. Left out: the HTTP rule matchers (compiled,
# switchyard.rules.http matches four rules in 3.1 µs instead of 3.6, a sliver of a request,
# and RequestMeta and http.routing trip mypyc's dataclass support), the I/O stages
# (connection, relay, dial, entrypoint, fastpath, splice) and everything pydantic.
COMPILED = [
    "switchyard/addresses.py",
    "switchyard/ipcheck.py",
    "switchyard/proxy/decision.py",
    "switchyard/proxy/preamble.py",
    "switchyard/proxy/proxyproto.py",
    "switchyard/routing/table.py",
    "switchyard/rules/combine.py",
    "switchyard/rules/errors.py",
    "switchyard/rules/lexer.py",
    "switchyard/rules/matchers.py",
    "switchyard/rules/parser.py",
    "switchyard/rules/priority.py",
    "switchyard/rules/rule.py",
    "switchyard/tls/clienthello.py",
    "switchyard/tls/postgres.py",
]


def _why_not_compiled() -> str:
    """What stands in the way of a compiled build ("" when nothing does)."""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypy (which ships mypyc) is not installed here: pip install mypy"
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}): apt-get install gcc"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python headers (Python.h): apt-get install python3-dev"
    return ""


def ext_modules() -> list[Any]:
    if os.environ.get("SWITCHYARD_COMPILE") != "1":
        return []
    problem = _why_not_compiled()
    if problem:
        print(f"SWITCHYARD_COMPILE=1, but {problem}; installing pure Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    # Paths relative to this directory, as setuptools runs it, so that mypyc names the
    # modules switchyard.*; the runtime library it adds is the top-level switchyard__mypyc.
    # mypy's own cache stays out of .mypy_cache, which `mypy src` keeps for other options.
    return mypycify([*(str(Path("src", module)) for module in COMPILED),
                     "--cache-dir", str(Path("build", "mypyc-cache"))],
                    opt_level="3", group_name="switchyard")


setup(ext_modules=ext_modules())
