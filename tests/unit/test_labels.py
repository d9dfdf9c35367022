"""Traefik's label syntax decoded into the dynamic configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.config.loader import load_dynamic
from switchyard.providers.labels import config_from_labels, decode_labels, labels_from_lines

DOCS = Path(__file__).parent.parent / "fixtures" / "providers" / "traefik-docs"


def doc_labels(name: str) -> dict[str, str]:
    lines = (DOCS / name).read_text().splitlines()
    return labels_from_lines(line for line in lines if line.strip() and not line.startswith("#"))


@pytest.mark.parametrize("example", sorted(p.name for p in DOCS.glob("*.labels")))
def test_every_documented_label_example_loads_without_errors(example: str) -> None:
    config, issues = config_from_labels(doc_labels(example), example)

    assert not [i for i in issues if i.severity == "error"], issues
    # The only key left over is `server.port`: the Docker provider turns it into an address.
    assert all(i.path.endswith("servers[0].port") for i in issues), issues
    assert config.tcp.routers or config.tcp.middlewares


@pytest.mark.parametrize("example", ["ipallowlist", "inflightconn"])
def test_documented_label_examples_equal_their_yaml_form(example: str) -> None:
    from_labels, _ = config_from_labels(doc_labels(f"{example}.labels"), "labels")
    from_yaml, _ = load_dynamic(filename=str(DOCS / f"{example}.yaml"))

    assert from_labels == from_yaml


def test_comma_lists_split_and_spaces_around_items_are_dropped() -> None:
    config, _ = config_from_labels({
        "traefik.tcp.routers.r.middlewares": "a,b@file",
        "traefik.tcp.routers.r.entrypoints": "web, ssh",
        "traefik.tcp.middlewares.m.ipallowlist.sourcerange": "127.0.0.1/32, 192.168.1.7",
    }, "test")

    assert config.tcp.routers["r"].middlewares == ["a", "b@file"]
    assert config.tcp.routers["r"].entry_points == ["web", "ssh"]
    allow = config.tcp.middlewares["m"].ip_allow_list
    assert allow is not None and allow.source_range == ["127.0.0.1/32", "192.168.1.7"]


def test_tls_true_makes_a_tls_router_and_tls_false_does_not() -> None:
    config, _ = config_from_labels({
        "traefik.tcp.routers.on.tls": "true",
        "traefik.tcp.routers.off.tls": "false",
        "traefik.tcp.routers.sans.tls.domains[0].main": "example.org",
        "traefik.tcp.routers.sans.tls.domains[0].sans": "a.example.org,b.example.org",
    }, "test")

    routers = config.tcp.routers
    assert routers["on"].tls is not None and routers["off"].tls is None
    assert routers["sans"].tls is not None
    assert routers["sans"].tls.domains[0].sans == ["a.example.org", "b.example.org"]


def test_keys_are_case_insensitive_but_names_keep_their_case() -> None:
    config, issues = config_from_labels({
        "Traefik.TCP.Routers.MyRouter.RULE": "HostSNI(`a`)",
        "traefik.tcp.routers.MyRouter.EntryPoints": "ep",
        "traefik.tcp.middlewares.Limit.InFlightConn.Amount": "3",
    }, "test")

    assert issues == []
    assert config.tcp.routers["MyRouter"].rule == "HostSNI(`a`)"
    assert config.tcp.routers["MyRouter"].entry_points == ["ep"]
    limit = config.tcp.middlewares["Limit"].in_flight_conn
    assert limit is not None and limit.amount == 3


def test_an_unknown_key_is_reported_at_its_label_and_its_router_still_loads() -> None:
    config, issues = config_from_labels({
        "traefik.tcp.routers.r.rule": "HostSNI(`a`)",
        "traefik.tcp.routers.r.entrypoint": "ep",
    }, "container x")

    assert [(i.source, i.path, i.severity) for i in issues] == [
        ("container x", "traefik.tcp.routers.r.entrypoint", "warning")]
    assert 'did you mean "entryPoints"' in issues[0].message
    assert config.tcp.routers["r"].rule == "HostSNI(`a`)"


def test_an_invalid_value_leaves_out_its_element_only() -> None:
    config, issues = config_from_labels({
        "traefik.tcp.routers.bad.priority": "high",
        "traefik.tcp.routers.good.rule": "HostSNI(`a`)",
    }, "test")

    assert list(config.tcp.routers) == ["good"]
    assert [(i.path, i.severity) for i in issues] == [("traefik.tcp.routers.bad.priority", "error")]


def test_provider_settings_and_foreign_labels_are_not_configuration() -> None:
    raw, issues = decode_labels({
        "traefik.enable": "true",
        "traefik.docker.network": "web",
        "com.docker.compose.service": "db",
        "traefik.tcp.routers.r.rule": "HostSNI(`*`)",
    }, "test")

    assert raw == {"tcp": {"routers": {"r": {"rule": "HostSNI(`*`)"}}}}
    assert issues == []


def test_the_server_label_is_the_first_server_of_the_load_balancer() -> None:
    raw, _ = decode_labels({
        "traefik.tcp.services.s.loadbalancer.server.port": "5432",
        "traefik.tcp.services.s.loadbalancer.server.tls": "true",
    }, "test")

    assert raw == {"tcp": {"services": {"s": {"loadBalancer": {
        "servers": [{"port": "5432", "tls": "true"}]}}}}}


def test_label_lines_split_at_the_first_equals_sign() -> None:
    assert labels_from_lines(["a.b=HostSNI(`x`) || ClientIP(`1.2.3.4`)", "c= d"]) == {
        "a.b": "HostSNI(`x`) || ClientIP(`1.2.3.4`)", "c": " d"}
