"""The swarm provider against a single-node swarm on a real Docker engine.

Task addresses live on an overlay network, which only its members reach; so Switchyard
runs as `switchyard run`, configured by TRAEFIK_* variables, inside the network namespace
of a container attached to that network (nsenter), and the test reaches its entry point
through that container's docker_gwbridge address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dockerkit import DockerEngine, docker_engine_or_skip, greeter
from tests.harness import greeting_name

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NETWORK = "back"
PORT, API = 9000, 9001


@pytest.fixture(scope="module")
def swarm() -> Iterator[DockerEngine]:
    with docker_engine_or_skip("10.234.0.0/24", "10.235.0.0/16") as engine:
        engine.image()
        init = engine.docker("swarm", "init", "--advertise-addr", "127.0.0.1",
                             "--default-addr-pool", "10.236.0.0/16", check=False)
        if init.returncode != 0:
            pytest.skip(f"docker swarm init failed: {init.stderr.decode().strip()}")
        engine.out("network", "create", "--driver", "overlay", "--attachable",
                   "--subnet", "10.236.10.0/24", NETWORK)
        yield engine


class InNetwork:
    """`switchyard run` in the network namespace of a container on the overlay network."""

    def __init__(self, engine: DockerEngine, **settings: str) -> None:
        engine.run("probe", "--network", NETWORK, command=["sleep", "3600"])
        probe = engine.inspect("probe")
        # A container on an overlay network reaches the host through docker_gwbridge.
        self.host = _gwbridge_address(engine, int(probe["State"]["Pid"]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAEFIK_")} | {
            "TRAEFIK_ENTRYPOINTS_EP_ADDRESS": f":{PORT}",
            "TRAEFIK_ENTRYPOINTS_TRAEFIK_ADDRESS": f":{API}",
            "TRAEFIK_API_INSECURE": "true",
            "TRAEFIK_PROVIDERS_PROVIDERSTHROTTLEDURATION": "20ms",
            "TRAEFIK_PROVIDERS_SWARM_ENDPOINT": engine.endpoint,
            "TRAEFIK_PROVIDERS_SWARM_NETWORK": NETWORK,
            "PYTHONPATH": str(REPO / "src"),
            **settings,
        }
        self.log = engine.root / "switchyard.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["nsenter", f"--net=/proc/{probe['State']['Pid']}/ns/net",
                 sys.executable, "-m", "switchyard", "run"],
                env=env, cwd=engine.root, stdout=out, stderr=subprocess.STDOUT)
        within(15, lambda: self._answers(API), lambda: self.log.read_text())

    def _answers(self, port: int) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def servers(self, service: str) -> list[str]:
        url = f"http://{self.host}:{API}/api/rawdata"
        with urllib.request.urlopen(url, timeout=5) as answer:
            raw = json.load(answer)
        found = raw.get("tcpServices", {}).get(f"{service}@swarm", {})
        return sorted(s["address"] for s in found.get("loadBalancer", {}).get("servers", []))

    def backend(self) -> str:
        try:
            with socket.create_connection((self.host, PORT), timeout=0.3) as conn:
                return greeting_name(conn)
        except (OSError, AssertionError):
            return ""

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _gwbridge_address(engine: DockerEngine, pid: int) -> str:
    shown = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-4", "-o", "addr"],
                           capture_output=True, text=True, check=True).stdout
    gateway = json.loads(engine.out("network", "inspect", "docker_gwbridge"))[0]
    subnet = gateway["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0]
    return next(part.split("/")[0] for line in shown.splitlines()
                for part in line.split() if part.startswith(subnet))


def within(seconds: float, check: Callable[[], bool],
           explain: Callable[[], str] = lambda: "") -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not true within {seconds} s\n{explain()}"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def switchyard(swarm: DockerEngine) -> Iterator[Callable[..., InNetwork]]:
    started: list[InNetwork] = []

    def start(**settings: str) -> InNetwork:
        started.append(InNetwork(swarm, **settings))
        return started[-1]

    yield start
    for each in started:
        each.stop()
    swarm.remove_everything(networks=False)


def service(swarm: DockerEngine, name: str, *options: str) -> None:
    labels = {f"traefik.tcp.routers.{name}.rule": "HostSNI(`*`)",
              f"traefik.tcp.routers.{name}.entrypoints": "ep",
              f"traefik.tcp.services.{name}.loadbalancer.server.port": "8080"}
    swarm.out("service", "create", "--detach", "--quiet", "--name", name,
              "--network", NETWORK, "--env", f"NAME={name}.{{{{.Task.Slot}}}}",
              "--stop-grace-period", "1s",
              *(arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")),
              *options, swarm.image(), *greeter())


def task_addresses(swarm: DockerEngine, name: str) -> list[str]:
    tasks = swarm.out("service", "ps", "-q", "--filter", "desired-state=running", name).split()
    found = []
    for task in tasks:
        inspected: Any = json.loads(swarm.out("inspect", task))[0]
        for attachment in inspected.get("NetworksAttachments") or []:
            if attachment["Network"]["Spec"]["Name"] == NETWORK:
                found.append(attachment["Addresses"][0].split("/")[0] + ":8080")
    return sorted(found)


def test_a_service_is_routed_to_its_running_tasks_and_follows_scale_changes(
        swarm: DockerEngine, switchyard: Callable[..., InNetwork]) -> None:
    router = switchyard()
    service(swarm, "web")
    within(15, lambda: len(router.servers("web")) == 1 and router.backend() == "web.1")
    assert router.servers("web") == task_addresses(swarm, "web")
    assert router.servers("web")[0].startswith("10.236.10.")  # a task, not the service's VIP

    swarm.out("service", "scale", "--detach", "web=3")
    within(15, lambda: len(router.servers("web")) == 3)
    assert router.servers("web") == task_addresses(swarm, "web")
    within(5, lambda: {router.backend() for _ in range(6)} == {"web.1", "web.2", "web.3"})

    swarm.out("service", "scale", "--detach", "web=1")
    within(15, lambda: len(router.servers("web")) == 1)

    swarm.out("service", "rm", "web")
    within(15, lambda: router.servers("web") == [] and router.backend() == "")


def test_a_label_update_is_followed_and_exposed_by_default_is_honoured(
        swarm: DockerEngine, switchyard: Callable[..., InNetwork]) -> None:
    router = switchyard(TRAEFIK_PROVIDERS_SWARM_EXPOSEDBYDEFAULT="false")
    service(swarm, "opt-in", "--label", "traefik.enable=true")
    service(swarm, "left-out")
    within(15, lambda: router.backend() == "opt-in.1")
    assert router.servers("left-out") == []

    swarm.out("service", "update", "--detach", "--label-add", "traefik.enable=false", "opt-in")
    within(15, lambda: router.servers("opt-in") == [])
