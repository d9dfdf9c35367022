"""One configuration written as YAML, TOML, Docker labels, CRDs and Consul tags routes the same."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.build import build_runtime, qualify
from switchyard.config.loader import load_dynamic, static_from_dict
from switchyard.providers.docker import Container, DockerOptions, config_from_containers
from switchyard.providers.kubernetes import (
    KubernetesCRDOptions,
    config_from_manifests,
    read_manifests,
)
from switchyard.providers.kv import config_from_pairs
from switchyard.providers.labels import labels_from_lines
from switchyard.server import Switchyard
from tests.consulkit import ConsulStandIn, running_consul
from tests.fixtures.providers.docker_engine import (
    FakeDockerEngine,
    on_loopback,
    recorded_containers,
)
from tests.harness import Backends, LoopThread, greeting_name, stop_router

FIXTURES = Path(__file__).parent.parent / "fixtures" / "providers"
EXAMPLE = FIXTURES / "four-forms"
DOCS = FIXTURES / "traefik-docs"
FORMS = ["yaml", "toml", "labels", "crd", "consul"]
Routing = list[tuple[Any, ...]]


@pytest.fixture
def ports(backends: Backends) -> dict[str, int]:
    return {"__PORT__": backends.whoami("primary"), "__REPLICA_PORT__": backends.whoami("replica")}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeDockerEngine]:
    # On its own loop, as a real engine is another process: Switchyard blocks its loop on it.
    loop = LoopThread()
    fake = FakeDockerEngine(str(tmp_path / "docker.sock"))
    loop.run(fake.start())
    yield fake
    loop.run(fake.stop())
    loop.stop()


@pytest.fixture
def consul() -> Iterator[ConsulStandIn]:
    with running_consul() as (standin, _):
        yield standin


def filled(name: str, ports: dict[str, int]) -> str:
    text = (EXAMPLE / name).read_text()
    for placeholder, port in ports.items():
        text = text.replace(placeholder, str(port))
    return text


def labelled_container(labels: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recorded whoami container, on loopback, wearing ``labels`` instead of its own."""
    entry, inspect = recorded_containers()["demo-whoami-1"]
    inspect = on_loopback(inspect, 0)
    inspect["Config"]["Labels"] = entry["Labels"] = labels
    return entry, inspect


def providers_for(form: str, ports: dict[str, int], tmp_path: Path,
                  engine: FakeDockerEngine, consul: ConsulStandIn) -> dict[str, Any]:
    if form in ("yaml", "toml"):
        path = tmp_path / f"example.{form}"
        path.write_text(filled(f"example.{form}", ports))
        return {"file": {"filename": str(path), "watch": False}}
    if form == "crd":
        (tmp_path / "manifests").mkdir()
        (tmp_path / "manifests" / "example.yaml").write_text(filled("example.crd.yaml", ports))
        return {"kubernetesCRD": {"manifests": str(tmp_path / "manifests"), "watch": False}}
    if form == "consul":
        # Consul tags are the label lines themselves, on a service registered in Consul.
        consul.register("db", 5432, tags=filled("example.labels", ports).splitlines())
        return {"consulCatalog": {"endpoint": {"address": consul.address}}}
    labels = labels_from_lines(filled("example.labels", ports).splitlines())
    engine.containers = {"demo-whoami-1": labelled_container(labels)}
    return {"docker": {"endpoint": f"unix://{engine.socket_path}", "watch": False}}


STATIC = {"entryPoints": {"ep": {"address": "127.0.0.1:0"}}}


@pytest.fixture
def router(loop_thread: LoopThread, tmp_path: Path, ports: dict[str, int],
           engine: FakeDockerEngine,
           consul: ConsulStandIn) -> Iterator[Callable[[str], Switchyard]]:
    started: list[Switchyard] = []

    def start(form: str) -> Switchyard:
        static, issues = static_from_dict(
            {**STATIC, "providers": providers_for(form, ports, tmp_path, engine, consul)}, "test")
        assert not issues
        app = Switchyard(static)
        loop_thread.run(app.start())
        started.append(app)
        return app

    yield start
    for app in started:
        stop_router(loop_thread, app)


def routing(runtime: Any) -> Routing:
    """What decides where a connection goes, without the names each form gives elements."""
    table = []
    for status in runtime.routers.values():
        assert status.status == "enabled", (status.name, status.errors)
        router = status.config
        middlewares = tuple(runtime.middlewares[qualify(m, status.provider)].config
                            for m in router.middlewares)
        service = runtime.services[qualify(router.service, status.provider)].config
        servers = tuple(sorted(s.address for s in service.load_balancer.servers))
        table.append((tuple(router.entry_points), router.rule, router.priority, router.tls,
                      middlewares, servers))
    return sorted(table, key=repr)


def client_hello(server_name: str) -> bytes:
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def backend_for(port: int, first_bytes: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(first_bytes)
        return greeting_name(conn)


@pytest.mark.parametrize("form", FORMS)
def test_each_form_routes_plain_and_tls_connections_to_the_same_backends(
        form: str, router: Callable[[str], Switchyard]) -> None:
    app = router(form)
    port = app.entrypoints["ep"].port

    assert backend_for(port, b"SELECT 1;\n") == "primary"
    assert backend_for(port, client_hello("db.example.com")) == "replica"


def test_the_five_forms_and_kv_keys_build_identical_routing(
        router: Callable[[str], Switchyard], ports: dict[str, int]) -> None:
    tables = {form: routing(router(form).runtime) for form in FORMS}
    pairs = dict(line.split(" ", 1) for line in filled("example.kv", ports).splitlines())
    kv_config, issues = config_from_pairs(pairs, "traefik", "kv")
    static, _ = static_from_dict(STATIC, "test")
    tables["kv"] = routing(build_runtime(static, {"redis": kv_config}, issues))

    assert len(tables["yaml"]) == 2
    assert all(table == tables["yaml"] for table in tables.values()), tables


@pytest.mark.parametrize("form", ["yaml", "consul"])
def test_the_seed_priority_example_picks_router_1_for_its_client(
        form: str, loop_thread: LoopThread, tmp_path: Path, ports: dict[str, int],
        consul: ConsulStandIn) -> None:
    if form == "yaml":
        (tmp_path / "seed.yaml").write_text(filled("seed-priority.yaml", ports))
        providers: dict[str, Any] = {"file": {"filename": str(tmp_path / "seed.yaml")}}
    else:
        consul.register("seed", 1, tags=filled("seed-priority.tags", ports).splitlines())
        providers = {"consulCatalog": {"endpoint": {"address": consul.address}}}
    # The client address comes from a PROXY header: no traffic leaves loopback.
    static, _ = static_from_dict({"entryPoints": {"ep": {
        "address": "127.0.0.1:0", "proxyProtocol": {"trustedIPs": ["127.0.0.1"]}}},
        "providers": providers}, "test")
    app = Switchyard(static)
    loop_thread.run(app.start())
    try:
        port = app.entrypoints["ep"].port
        chosen = {client: backend_for(port, f"PROXY TCP4 {client} 127.0.0.1 5555 80\r\n".encode())
                  for client in ("192.168.0.12", "192.168.0.13")}
    finally:
        stop_router(loop_thread, app)

    assert chosen == {"192.168.0.12": "primary", "192.168.0.13": "replica"}


# --- the documentation's own examples ----------------------------------------------------


def doc_config(path: Path) -> Any:
    """A documentation example loaded as its provider loads it; error issues fail the test."""
    if path.name.endswith(".crd.yaml"):
        manifests, issues = read_manifests(str(path))
        config, found = config_from_manifests(manifests, KubernetesCRDOptions())
        issues += found
    elif path.suffix == ".labels":
        lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
        _, inspect = labelled_container(labels_from_lines(filter(None, lines)))
        config, issues = config_from_containers([Container.from_inspect(inspect)],
                                                DockerOptions())
    elif path.suffix == ".kv":
        pairs = dict(line.split(" ", 1) for line in path.read_text().splitlines() if line)
        config, issues = config_from_pairs(pairs, "traefik", path.name)
    else:
        config, issues = load_dynamic(filename=str(path))
    errors = [i.path for i in issues if i.severity == "error"]
    assert errors == DOC_GAPS.get(path.name, []), issues
    return config


# Snippets the documentation leaves incomplete ("more fields..."); Traefik reports the same.
DOC_GAPS = {"middleware-overview.labels": ["traefik.tcp.routers.router1.rule"]}


@pytest.mark.parametrize("example", sorted(
    p.name for p in DOCS.iterdir() if p.suffix in (".labels", ".kv", ".yaml", ".toml")))
def test_every_documented_tcp_example_loads(example: str) -> None:
    config = doc_config(DOCS / example)

    assert config.tcp.routers or config.tcp.middlewares


@pytest.mark.parametrize("example", ["ipallowlist", "inflightconn"])
def test_every_form_of_a_documented_middleware_example_is_the_same_middleware(
        example: str) -> None:
    found = {path.name: list(doc_config(path).tcp.middlewares.values())
             for path in DOCS.glob(f"{example}.*") if path.suffix != ".md"}

    assert len(found) == 5
    assert all(middlewares == found[f"{example}.yaml"] for middlewares in found.values()), found
