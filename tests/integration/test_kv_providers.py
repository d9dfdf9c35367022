"""The redis, etcd and zooKeeper providers against real servers: two routers follow one store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from switchyard.config.loader import static_from_dict
from switchyard.providers.kv import config_from_pairs
from switchyard.server import Switchyard
from tests.harness import Backends, LoopThread, connect, greeting_name, stop_router

ROOT = "traefik"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Store:
    """A store server run as a child process, tracked by its PID and always stopped."""

    name = ""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def put(self, key: str, value: str) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def provider_options(self) -> dict[str, Any]:
        raise NotImplementedError

    def start(self) -> None:
        binary = self.command()[0]
        assert shutil.which(binary), f"{binary} is missing: run `make deps`"
        log = open(self.data / "server.log", "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, cwd=self.data)
        deadline = time.monotonic() + 15
        while not self.ready():
            assert self.process.poll() is None, (self.data / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


class RedisStore(Store):
    name = "redis"

    def __init__(self, data: Path) -> None:
        super().__init__(data)
        self.port = free_port()

    def command(self) -> list[str]:
        # Append-only persistence, so the data is still there after a restart.
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.data), "--appendonly", "yes", "--save", "", "--protected-mode", "no"]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, decode_responses=True)

    def ready(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def put(self, key: str, value: str) -> None:
        with self.client() as client:
            client.set(key, value)

    def clear(self) -> None:
        with self.client() as client:
            for key in client.scan_iter(match=f"{ROOT}/*"):
                client.delete(key)

    def provider_options(self) -> dict[str, Any]:
        return {"redis": {"endpoints": [f"127.0.0.1:{self.port}"]}}


class EtcdStore(Store):
    name = "etcd"

    def __init__(self, data: Path) -> None:
        super().__init__(data)
        self.port, self.peer = free_port(), free_port()

    def command(self) -> list[str]:
        client, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer}"
        return ["etcd", "--name", "test", "--data-dir", str(self.data / "member"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"test={peer}", "--log-level", "error"]

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["etcdctl", f"--endpoints=127.0.0.1:{self.port}",
                               "--dial-timeout=1s", *args], capture_output=True, timeout=10,
                              check=False, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})

    def ready(self) -> bool:
        return self.etcdctl("endpoint", "health").returncode == 0

    def put(self, key: str, value: str) -> None:
        # "--" so that a value starting with a dash is not read as an option.
        assert self.etcdctl("put", "--", key, value).returncode == 0

    def clear(self) -> None:
        assert self.etcdctl("del", "--prefix", f"{ROOT}/").returncode == 0

    def provider_options(self) -> dict[str, Any]:
        return {"etcd": {"endpoints": [f"127.0.0.1:{self.port}"]}}


class ZooKeeperStore(Store):
    """Debian's ZooKeeper server (package zookeeper, the server zookeeperd runs), standalone."""

    name = "zookeeper"
    JAR = "/usr/share/java/zookeeper.jar"

    def __init__(self, data: Path) -> None:
        super().__init__(data)
        self.port = free_port()
        (data / "zoo.cfg").write_text(f"tickTime=500\ndataDir={data / 'zk'}\n"
                                      f"clientPort={self.port}\nclientPortAddress=127.0.0.1\n")

    def command(self) -> list[str]:
        assert Path(self.JAR).exists(), f"{self.JAR} is missing: run `make deps`"
        # The data directory first on the class path: no log4j configuration there, so the
        # server logs nothing; no admin HTTP server on port 8080.
        return ["java", "-Dzookeeper.admin.enableServer=false", "-cp",
                f"{self.data}:{self.JAR}", "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(self.data / "zoo.cfg")]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"srvr")
                return b"Zookeeper version" in conn.recv(4096)
        except OSError:
            return False

    def client(self) -> Any:
        from kazoo.client import KazooClient

        client = KazooClient(f"127.0.0.1:{self.port}", timeout=2)
        client.start(timeout=5)
        return client

    def put(self, key: str, value: str) -> None:
        client = self.client()
        try:
            path = "/" + key
            if client.exists(path):
                client.set(path, value.encode())
            else:
                client.create(path, value.encode(), makepath=True)
        finally:
            client.stop()
            client.close()

    def clear(self) -> None:
        client = self.client()
        try:
            client.delete(f"/{ROOT}", recursive=True)
        finally:
            client.stop()
            client.close()

    def provider_options(self) -> dict[str, Any]:
        return {"zooKeeper": {"endpoints": [f"127.0.0.1:{self.port}"]}}


@pytest.fixture(scope="module", params=[RedisStore, EtcdStore, ZooKeeperStore],
                ids=["redis", "etcd", "zookeeper"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Store]:
    server: Store = request.param(tmp_path_factory.mktemp(request.param.name))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def empty_store(store: Store) -> Store:
    if store.process is None:
        store.start()
    store.clear()
    return store


class Router:
    """One Switchyard instance with the store as its only provider, on its own loop."""

    def __init__(self, store: Store, **providers: Any) -> None:
        self.loop = LoopThread()
        static, _ = static_from_dict({
            "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
            # The 2 s default throttle would delay a second change that closely follows one.
            "providers": {"providersThrottleDuration": "50ms", **store.provider_options(),
                          **providers},
        }, "test")
        self.app = Switchyard(static)
        self.loop.run(self.app.start())

    def backend(self) -> str:
        with connect(self.app.entrypoints["ep"].port) as conn:
            return greeting_name(conn)

    def close(self) -> None:
        stop_router(self.loop, self.app)
        self.loop.run(self.app.shutdown())
        self.loop.stop()


@pytest.fixture
def routers(empty_store: Store) -> Iterator[Callable[..., Router]]:
    started: list[Router] = []

    def start(**providers: Any) -> Router:
        started.append(Router(empty_store, **providers))
        return started[-1]

    yield start
    for router in started:
        router.close()


def write_route(store: Store, backend_port: int) -> None:
    """Router "app" on "ep", for every connection, to the backend on ``backend_port``."""
    store.put(f"{ROOT}/tcp/services/app/loadbalancer/servers/0/address",
              f"127.0.0.1:{backend_port}")
    store.put(f"{ROOT}/tcp/routers/app/entrypoints/0", "ep")
    store.put(f"{ROOT}/tcp/routers/app/service", "app")
    store.put(f"{ROOT}/tcp/routers/app/rule", "HostSNI(`*`)")


def eventually(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check`` held; fails after ``within`` seconds."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"not true within {within} s"
        time.sleep(0.02)
    return time.monotonic() - start


def routes_to(router: Router, name: str) -> bool:
    try:
        return router.backend() == name
    except (OSError, AssertionError):
        return False


def test_two_instances_route_a_connection_as_the_store_says_within_a_second(
        empty_store: Store, routers: Callable[..., Router], backends: Backends) -> None:
    blue, green = backends.whoami("blue"), backends.whoami("green")
    write_route(empty_store, blue)
    first, second = routers(), routers()
    assert first.backend() == second.backend() == "blue"

    empty_store.put(f"{ROOT}/tcp/services/app/loadbalancer/servers/0/address",
                    f"127.0.0.1:{green}")

    assert eventually(lambda: routes_to(first, "green") and routes_to(second, "green"), 1.0)


def test_routing_goes_on_while_the_store_is_down_and_changes_flow_after_restart(
        empty_store: Store, routers: Callable[..., Router], backends: Backends) -> None:
    blue, green = backends.whoami("blue"), backends.whoami("green")
    write_route(empty_store, blue)
    first, second = routers(), routers()

    empty_store.stop()
    time.sleep(0.3)  # the providers notice and start retrying
    assert first.backend() == second.backend() == "blue"
    assert first.app.provider_errors.keys() == {empty_store.name}

    empty_store.start()
    empty_store.put(f"{ROOT}/tcp/services/app/loadbalancer/servers/0/address",
                    f"127.0.0.1:{green}")
    # Reconnection backs off up to 5 s; the change then arrives like any other.
    eventually(lambda: routes_to(first, "green") and routes_to(second, "green"), 8.0)
    assert not first.app.provider_errors


def test_a_value_that_is_not_a_rule_disables_its_router_only(
        empty_store: Store, routers: Callable[..., Router], backends: Backends) -> None:
    write_route(empty_store, backends.whoami("blue"))
    empty_store.put(f"{ROOT}/tcp/routers/broken/rule", "HostSNI(`unclosed.example.com`")
    empty_store.put(f"{ROOT}/tcp/routers/broken/service", "app")
    router = routers()

    broken = router.app.runtime.routers[f"broken@{empty_store.name}"]
    assert broken.status == "disabled"
    assert "HostSNI(`unclosed.example.com`" in " ".join(broken.errors)
    assert router.backend() == "blue"


def test_a_store_router_uses_a_file_service_and_middleware_through_their_provider_suffix(
        empty_store: Store, routers: Callable[..., Router], backends: Backends,
        tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(f"""
tcp:
  middlewares:
    only-local: {{ipAllowList: {{sourceRange: ["127.0.0.1/32"]}}}}
  services:
    shared: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backends.whoami('from-file')}"}}]}}}}
""")
    empty_store.put(f"{ROOT}/tcp/routers/app/entrypoints/0", "ep")
    empty_store.put(f"{ROOT}/tcp/routers/app/rule", "HostSNI(`*`)")
    empty_store.put(f"{ROOT}/tcp/routers/app/middlewares/0", "only-local@file")
    empty_store.put(f"{ROOT}/tcp/routers/app/service", "shared@file")

    router = routers(file={"filename": str(dynamic), "watch": False})

    status = router.app.runtime.routers[f"app@{empty_store.name}"]
    assert status.status == "enabled", status.errors
    assert router.backend() == "from-file"


def test_store_keys_decode_as_traefik_lays_them_out() -> None:
    pairs = {
        "traefik/tcp/routers/Mine/Rule": "HostSNI(`a.example.com`)",
        "traefik/tcp/routers/mine/entrypoints/1": "ssh",
        "traefik/tcp/routers/mine/entrypoints/0": "web",
        "traefik/tcp/routers/mine/tls": "true",
        "traefik/tcp/routers/mine/tls/domains/0/sans/0": "b.example.com",
        "traefik/tcp/routers/other/rule": "HostSNI(`c.example.com`)",
        "traefik/tcp/routers/other/priority": "not a number",
        "other/tcp/routers/ignored/rule": "HostSNI(`x`)",
    }

    config, issues = config_from_pairs(pairs, "traefik", "test")

    assert list(config.tcp.routers) == ["Mine"]  # "other" is invalid; sorted order spells it
    router = config.tcp.routers["Mine"]
    assert router.rule == "HostSNI(`a.example.com`)"
    assert router.entry_points == ["web", "ssh"]
    assert router.tls is not None and router.tls.domains[0].sans == ["b.example.com"]
    assert [(i.path, i.severity) for i in issues] == [("tcp.routers.other.priority", "error")]


def test_two_switchyard_processes_converge_on_the_store(
        empty_store: Store, backends: Backends, tmp_path: Path) -> None:
    """The same as above with two real `switchyard run` processes sharing the store."""
    import signal
    import sys

    import yaml

    from tests.harness import wait_for_port

    blue, green = backends.whoami("blue"), backends.whoami("green")
    write_route(empty_store, blue)
    processes, ports = [], []
    try:
        for index in range(2):
            port = free_port()
            static = tmp_path / f"traefik-{index}.yml"
            static.write_text(yaml.safe_dump({
                "entryPoints": {"ep": {"address": f"127.0.0.1:{port}"}},
                "providers": {"providersThrottleDuration": "50ms",
                              **empty_store.provider_options()},
            }))
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "switchyard", "run", "-c", str(static)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
        for port in ports:
            wait_for_port(port)

        def backend_of(port: int) -> str:
            try:
                with connect(port) as conn:
                    return greeting_name(conn)
            except (OSError, AssertionError):
                return ""

        eventually(lambda: all(backend_of(p) == "blue" for p in ports), 5.0)
        empty_store.put(f"{ROOT}/tcp/services/app/loadbalancer/servers/0/address",
                        f"127.0.0.1:{green}")
        assert eventually(lambda: all(backend_of(p) == "green" for p in ports), 1.0) < 1.0
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(10)
