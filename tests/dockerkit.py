"""A real Docker engine for tests: Debian's dockerd on private paths, a bridge the test picks.

``DockerEngine(subnet).start()`` runs ``dockerd`` as a child with its own data root, exec
root and unix socket under a short ``/tmp`` directory, ``--iptables=false
--ip-forward=false --ip-masq=false`` and a bridge created here on ``subnet``, so nothing
of the host's networking is touched; ``stop()`` removes every container, service and
network, stops ``dockerd`` by its PID and then deletes what it leaves behind (netns
mounts, the bridge, ``docker_gwbridge``). No registry is reachable, so ``image()`` builds
the one image the tests use from Debian's ``busybox-static`` with ``docker import``.

Containers of that image run ``nc -ll -p PORT -e /bin/greet``: every connection gets
"Hostname: $NAME", then an echo, as the whoami backends of ``tests.harness`` do.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = ["IMAGE", "DockerEngine", "docker_engine_or_skip", "greeter"]

IMAGE = "switchyard-test/busybox:1"
BUSYBOX = "/bin/busybox"
_APPLETS = ("sh", "nc", "cat", "echo", "sleep", "test", "touch", "rm", "env", "ip", "ls",
            "hostname", "mkdir", "httpd")
_GREET = '#!/bin/sh\necho "Hostname: $NAME"\necho "IP: $(hostname)"\nexec cat\n'


def greeter(port: int = 8080) -> list[str]:
    """The command of a backend greeting with its NAME variable on ``port``."""
    return ["nc", "-ll", "-p", str(port), "-e", "/bin/greet"]


class DockerEngine:
    """One dockerd child process and everything it creates, all removed by ``stop``."""

    def __init__(self, subnet: str, pool: str) -> None:
        self.subnet = ipaddress.ip_network(subnet)
        self.pool = pool  # where dockerd takes user networks (and docker_gwbridge) from
        self.root = Path(tempfile.mkdtemp(prefix="sy-d", dir="/tmp"))
        self.socket = self.root / "d.sock"
        self.bridge = f"syb{os.getpid() % 100000}"
        self.process: subprocess.Popen[bytes] | None = None
        self.client = _client()
        self._had_run_docker = os.path.exists("/run/docker")

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        gateway = next(self.subnet.hosts())
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        log = open(self.root / "dockerd.log", "wb")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--host", self.endpoint,
             "--pidfile", str(self.root / "d.pid"), "--bridge", self.bridge,
             "--iptables=false", "--ip-forward=false", "--ip-masq=false",
             "--default-address-pool", f"base={self.pool},size=24",
             "--storage-driver", "vfs", "--log-level", "warn"],
            stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 20
        while self.docker("version", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                reason = self.log_tail()
                self.stop()
                raise RuntimeError(f"dockerd did not start: {reason}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        try:
            return (self.root / "dockerd.log").read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([self.client, "-H", self.endpoint, *args], input=input,
                              capture_output=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode()}")
        return done

    def out(self, *args: str) -> str:
        return self.docker(*args).stdout.decode().strip()

    def inspect(self, name: str) -> Any:
        return json.loads(self.out("inspect", name))[0]

    def image(self) -> str:
        """The test image, imported from busybox-static once per engine."""
        if self.docker("image", "inspect", IMAGE, check=False).returncode == 0:
            return IMAGE
        rootfs = self.root / "rootfs.tar"
        with tarfile.open(rootfs, "w") as tar:
            tar.add(BUSYBOX, "bin/busybox")
            for applet in _APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
            script = _GREET.encode()
            info = tarfile.TarInfo("bin/greet")
            info.mode, info.size = 0o755, len(script)
            tar.addfile(info, io.BytesIO(script))
            for directory in ("tmp", "etc"):
                entry = tarfile.TarInfo(directory)
                entry.type, entry.mode = tarfile.DIRTYPE, 0o1777
                tar.addfile(entry)
        self.docker("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)
        return IMAGE

    def run(self, name: str, *options: str, command: Sequence[str] | None = None) -> str:
        """``docker run -d --init`` of the test image greeting as ``name``; the container id."""
        return self.out("run", "-d", "--init", "--name", name, "-e", f"NAME={name}",
                        *options, self.image(), *(command or greeter()))

    def remove_everything(self, networks: bool = True) -> None:
        """Every service, container (and user network): the next test starts from nothing."""
        services = self.out("service", "ls", "-q") if self.swarm_active() else ""
        if services:
            self.docker("service", "rm", *services.split(), check=False)
        containers = self.out("ps", "-aq")
        if containers:
            self.docker("rm", "-f", "-v", *containers.split(), check=False)
        if not networks:
            return
        custom = self.out("network", "ls", "-q", "--filter", "type=custom").split()
        if custom:
            # Swarm's ingress network is left to `swarm leave`.
            names = [self.out("network", "inspect", "-f", "{{.Name}}", n) for n in custom]
            keep = [n for n, name in zip(custom, names, strict=True)
                    if name not in ("ingress", "docker_gwbridge")]
            if keep:
                self.docker("network", "rm", *keep, check=False)

    def swarm_active(self) -> bool:
        return self.out("info", "-f", "{{.Swarm.LocalNodeState}}") == "active"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.remove_everything()
                if self.swarm_active():
                    self.docker("swarm", "leave", "--force", check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None
        self._clean_up_after_dockerd()

    def _clean_up_after_dockerd(self) -> None:
        # Mounts dockerd left (netns files, a container's rootfs): deepest first.
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if f" {self.root}/" in line]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for link in (self.bridge, "docker_gwbridge"):
            if _link_exists(link):
                _ip("link", "del", link)
        shutil.rmtree(self.root, ignore_errors=True)
        if not self._had_run_docker:
            # dockerd's plugin directory, empty: it was not there before this engine.
            shutil.rmtree("/run/docker", ignore_errors=True)


def _client() -> str:
    # The client Debian ships with dockerd speaks its API version; another one may be first
    # on PATH (a newer static client).
    dockerd = shutil.which("dockerd")
    beside = Path(dockerd).parent.parent / "bin" / "docker" if dockerd else None
    if beside is not None and beside.exists():
        return str(beside)
    return shutil.which("docker") or "docker"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True,
                          check=False).returncode == 0


def _unavailable() -> str:
    """Why a Docker engine cannot run here, or "" when it can."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for command, package in (("dockerd", "docker.io"), ("ip", "iproute2")):
        if shutil.which(command) is None:
            return f"{command} is missing: run `make deps` (Debian package {package})"
    try:
        with open(BUSYBOX, "rb") as binary:
            # A dynamically linked busybox (Debian's "busybox") names its loader up front,
            # and cannot run in an image that has no libc.
            dynamic = b"ld-linux" in binary.read(4096)
    except OSError:
        return f"{BUSYBOX} is missing: run `make deps` (Debian package busybox-static)"
    if dynamic:
        return f"{BUSYBOX} is not static: install Debian's busybox-static"
    return ""


@contextlib.contextmanager
def docker_engine_or_skip(subnet: str, pool: str) -> Iterator[DockerEngine]:
    """A started engine, stopped afterwards; the test skips with the reason if it cannot start."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    engine = DockerEngine(subnet, pool)
    try:
        engine.start()
    except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
        engine.stop()
        pytest.skip(f"a Docker engine cannot run here: {error}")
    try:
        yield engine
    finally:
        engine.stop()
