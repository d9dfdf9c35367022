"""The docker provider against a stand-in engine speaking the Docker API on a unix socket."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.config.loader import ConfigLoadError, static_from_dict
from switchyard.providers.base import ProviderUpdate
from switchyard.providers.docker import (
    Container,
    DockerOptions,
    compile_constraints,
    config_from_containers,
    docker_provider,
)
from switchyard.server import Switchyard
from tests.fixtures.providers.docker_engine import (
    FakeDockerEngine,
    on_loopback,
    recorded_containers,
)
from tests.harness import Backends, LoopThread, connect, greeting_name, stop_router

RECORDED = recorded_containers()


@pytest.fixture
def engine_loop() -> Iterator[LoopThread]:
    # Its own loop, as a real engine is its own process: Switchyard blocks its loop while it
    # loads the first configuration.
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def engine(engine_loop: LoopThread, tmp_path: Path) -> Iterator[FakeDockerEngine]:
    fake = FakeDockerEngine(str(tmp_path / "docker.sock"))
    engine_loop.run(fake.start())
    for name in ("demo-whoami-1", "demo-postgres-1", "demo-web-1", "demo-cache-1"):
        fake.containers[name] = RECORDED[name]
    yield fake
    engine_loop.run(fake.stop())


def options(engine: FakeDockerEngine, **extra: Any) -> DockerOptions:
    return DockerOptions.model_validate({"endpoint": f"unix://{engine.socket_path}", **extra})


def container(name: str, **labels: str) -> Container:
    inspect = copy.deepcopy(RECORDED[name][1])
    inspect["Config"]["Labels"].update(labels)
    return Container.from_inspect(inspect)


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def servers(update: ProviderUpdate, service: str) -> list[str]:
    assert update.config is not None, update.error
    balancer = update.config.tcp.services[service].load_balancer
    assert balancer is not None
    return sorted(server.address for server in balancer.servers)


# --- through the API ---------------------------------------------------------------------


def test_running_labelled_containers_become_tcp_routers_and_services(
        engine: FakeDockerEngine) -> None:
    update = docker_provider(options(engine)).load()

    assert update.config is not None, update.error
    assert list(update.config.tcp.routers) == ["whoami"]
    router = update.config.tcp.routers["whoami"]
    assert (router.rule, router.entry_points, router.service) == ("HostSNI(`*`)", ["ep"], "whoami")
    assert servers(update, "whoami") == ["172.18.0.2:8080"]
    assert "/containers/json" in engine.requests
    assert f"/containers/{RECORDED['demo-whoami-1'][1]['Id']}/json" in engine.requests


def test_disabled_http_only_and_unhealthy_containers_are_left_out(engine: FakeDockerEngine) -> None:
    update = docker_provider(options(engine)).load()

    assert update.config is not None
    assert not {"pg", "cache"} & set(update.config.tcp.routers)
    assert not [i for i in update.issues if i.severity == "error"], update.issues


def test_replicas_of_one_service_share_one_load_balancer(engine: FakeDockerEngine) -> None:
    engine.containers["demo-whoami-2"] = RECORDED["demo-whoami-2"]

    update = docker_provider(options(engine)).load()

    assert servers(update, "whoami") == ["172.18.0.2:8080", "172.18.0.3:8080"]


def test_container_events_update_the_configuration(loop_thread: LoopThread, engine_loop: LoopThread,
                                                   engine: FakeDockerEngine) -> None:
    updates: list[ProviderUpdate] = []
    provider = docker_provider(options(engine))
    loop_thread.loop.call_soon_threadsafe(
        lambda: loop_thread.loop.create_task(provider.watch(updates.append)))
    wait_for(lambda: len(updates) == 1)

    engine_loop.run(engine.add(*RECORDED["demo-whoami-2"]))
    wait_for(lambda: len(updates) == 2, timeout=1)
    assert servers(updates[-1], "whoami") == ["172.18.0.2:8080", "172.18.0.3:8080"]

    engine_loop.run(engine.remove("demo-whoami-1"))
    wait_for(lambda: len(updates) == 3, timeout=1)
    assert servers(updates[-1], "whoami") == ["172.18.0.3:8080"]


def test_engine_outage_is_reported_once_and_watching_resumes(
        loop_thread: LoopThread, engine_loop: LoopThread, engine: FakeDockerEngine) -> None:
    updates: list[ProviderUpdate] = []
    provider = docker_provider(options(engine))
    loop_thread.loop.call_soon_threadsafe(
        lambda: loop_thread.loop.create_task(provider.watch(updates.append)))
    wait_for(lambda: len(updates) == 1)

    engine_loop.run(engine.stop())
    wait_for(lambda: len(updates) == 2)
    time.sleep(0.5)  # backoff retries meanwhile: none of them may publish again
    assert len(updates) == 2 and updates[1].config is None
    assert "docker unix://" in updates[1].error

    Path(engine.socket_path).unlink(missing_ok=True)
    engine.containers["demo-whoami-2"] = RECORDED["demo-whoami-2"]
    engine_loop.run(engine.start())
    wait_for(lambda: len(updates) == 3)
    assert servers(updates[2], "whoami") == ["172.18.0.2:8080", "172.18.0.3:8080"]


def test_a_connection_reaches_the_labelled_container(loop_thread: LoopThread, backends: Backends,
                                                     engine: FakeDockerEngine) -> None:
    port = backends.whoami("from-docker")
    entry, inspect = RECORDED["demo-whoami-1"]
    engine.containers = {"demo-whoami-1": (entry, on_loopback(inspect, port))}
    static, _ = static_from_dict({
        "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
        "providers": {"docker": {"endpoint": f"unix://{engine.socket_path}", "watch": False}},
    }, "test")
    app = Switchyard(static)
    loop_thread.run(app.start())
    try:
        with connect(app.entrypoints["ep"].port) as conn:
            assert greeting_name(conn) == "from-docker"
    finally:
        stop_router(loop_thread, app)


# --- from containers to configuration ----------------------------------------------------

DEFAULTS = DockerOptions()


def test_exposed_by_default_false_takes_only_containers_with_traefik_enable() -> None:
    hidden = DockerOptions(exposed_by_default=False)
    enabled = container("demo-whoami-1", **{"traefik.enable": "true"})

    assert config_from_containers([container("demo-whoami-1")], hidden)[0].tcp.routers == {}
    assert list(config_from_containers([enabled], hidden)[0].tcp.routers) == ["whoami"]


@pytest.mark.parametrize(("expression", "kept"), [
    ('Label("com.docker.compose.service", "whoami")', True),
    ("Label(`com.docker.compose.service`, `postgres`)", False),
    ("LabelRegex(`com.docker.compose.service`, `^who`)", True),
    ("!LabelRegex(`com.docker.compose.service`, `^who`)", False),
    ("Label(`a`, `b`) || (Label(`com.docker.compose.project`, `demo`) && !Label(`x`, `y`))",
     True),
])
def test_constraints_select_containers_by_their_labels(expression: str, kept: bool) -> None:
    config, _ = config_from_containers([container("demo-whoami-1")],
                                       DockerOptions(constraints=expression))

    assert bool(config.tcp.routers) is kept


def test_a_malformed_constraint_is_refused_with_its_position() -> None:
    with pytest.raises(ValueError, match="column 10"):
        compile_constraints("Label(`a`)")
    with pytest.raises(ConfigLoadError, match="providers.docker.constraints"):
        docker_provider(DockerOptions(constraints="Nope(`a`, `b`)"))


def test_the_network_label_chooses_the_address_on_a_multi_network_container() -> None:
    inspect = copy.deepcopy(RECORDED["demo-whoami-1"][1])
    inspect["NetworkSettings"]["Networks"]["backend"] = {"IPAddress": "10.9.0.7"}
    inspect["Config"]["Labels"]["traefik.docker.network"] = "backend"

    config, _ = config_from_containers([Container.from_inspect(inspect)], DEFAULTS)

    balancer = config.tcp.services["whoami"].load_balancer
    assert balancer is not None and balancer.servers[0].address == "10.9.0.7:8080"


def test_without_service_labels_the_container_name_makes_the_service_and_lowest_port() -> None:
    bare = container("demo-cache-1")  # router labels only, no service labels
    bare = Container(bare.id, bare.name, bare.labels, bare.networks, (6380, 6379))

    config, _ = config_from_containers([bare], DEFAULTS)

    assert config.tcp.routers["cache"].service == "cache-demo"
    balancer = config.tcp.services["cache-demo"].load_balancer
    assert balancer is not None and balancer.servers[0].address == "172.18.0.6:6379"


def test_an_unknown_label_key_is_reported_against_its_router_and_the_rest_runs() -> None:
    typo = container("demo-whoami-1", **{"traefik.tcp.routers.whoami.rulez": "HostSNI(`a`)"})

    config, issues = config_from_containers([typo], DEFAULTS)

    assert [(i.source, i.path) for i in issues] == [
        ('docker container "demo-whoami-1"', "traefik.tcp.routers.whoami.rulez")]
    assert 'did you mean "rule"' in issues[0].message
    assert config.tcp.routers["whoami"].rule == "HostSNI(`*`)"


def test_a_router_without_rule_is_reported_and_left_out() -> None:
    broken = container("demo-whoami-1", **{"traefik.tcp.routers.other.entrypoints": "ep"})

    config, issues = config_from_containers([broken], DEFAULTS)

    assert list(config.tcp.routers) == ["whoami"]
    assert [i.path for i in issues] == ["traefik.tcp.routers.other.rule"]


def test_one_router_defined_differently_by_two_containers_is_dropped() -> None:
    first = container("demo-whoami-1")
    second = container("demo-whoami-2", **{"traefik.tcp.routers.whoami.priority": "5"})

    config, issues = config_from_containers([first, second], DEFAULTS)

    assert "whoami" not in config.tcp.routers
    assert [i.path for i in issues if i.severity == "error"] == ["tcp.routers.whoami"]
    assert "demo-whoami-1" in issues[0].message and "demo-whoami-2" in issues[0].message
