"""bench/compare.py loaded as a module, for tests of the benchmark harness itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"

__all__ = ["BENCH", "compare"]


def _load() -> ModuleType:
    if "bench_compare" in sys.modules:
        return sys.modules["bench_compare"]
    # The script imports its sibling doc_section by plain name, as it does when run.
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_compare", BENCH / "compare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_compare"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


compare = _load()
