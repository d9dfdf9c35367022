"""What every atheris entry point shares: the import path, instrumentation, seeds, the run."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from types import ModuleType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_properties(module: str) -> ModuleType:
    """The test module holding the target's checks, with Switchyard instrumented for coverage.

    The checks live with the hypothesis tests (tests/fuzz/) so the suite and the long runs
    hold the code to the same properties.
    """
    import atheris  # optional: pip install atheris

    sys.path.insert(0, os.path.join(ROOT, "src"))
    sys.path.insert(0, ROOT)
    with atheris.instrument_imports(include=["switchyard"]):
        import importlib

        return importlib.import_module(f"tests.fuzz.{module}")


def run(check: Callable[[bytes], None], seeds: Iterable[bytes]) -> None:
    """Check the seeds (issue 13's inputs among them) first, then fuzz until told to stop."""
    import atheris

    for seed in seeds:
        check(seed)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
