"""Consul Catalog instances to configuration, tag constraints and default-rule templates."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.providers.constraints import compile_tag_constraints
from switchyard.providers.consul_catalog import (
    ConsulCatalogOptions,
    Instance,
    aggregated_status,
    config_from_instances,
    instances_from_health,
    tags_to_labels,
)
from switchyard.providers.default_rule import compile_default_rule
from switchyard.providers.flatkeys import normalize_name

TCP = ("traefik.tcp.routers.db.rule=HostSNI(`*`)",)


def instance(*tags: str, **fields: Any) -> Instance:
    base = Instance(id="db-1", node="node-1", datacenter="dc1", name="db", namespace="default",
                    address="10.0.0.5", port="5432", status="passing", tags=tags)
    return dataclasses.replace(base, **fields)


def options(**values: Any) -> ConsulCatalogOptions:
    return ConsulCatalogOptions.model_validate(values)


def tcp_servers(config: Any, service: str) -> list[str]:
    return [s.address for s in config.tcp.services[service].load_balancer.servers]


def test_tags_with_the_prefix_become_traefik_labels() -> None:
    tags = ["edge.tcp.routers.r.rule=HostSNI(`*`)", "edge.enable=true", "edge", "other=1"]

    assert tags_to_labels(tags, "edge") == {"traefik.tcp.routers.r.rule": "HostSNI(`*`)",
                                            "traefik.enable": "true"}


def test_a_tcp_router_gets_the_instance_address_and_the_service_named_after_it() -> None:
    config, issues = config_from_instances([instance(*TCP)], options())

    assert not issues
    assert config.tcp.routers["db"].service == "db"
    assert tcp_servers(config, "db") == ["10.0.0.5:5432"]
    assert not config.http  # a TCP-only service gets no default HTTP router


def test_the_port_tag_overrides_the_registered_port_and_ipv6_is_bracketed() -> None:
    config, _ = config_from_instances([instance(
        *TCP, "traefik.tcp.services.db.loadbalancer.server.port=6000", address="fd00::5")],
        options())

    assert tcp_servers(config, "db") == ["[fd00::5]:6000"]


def test_instances_of_one_service_share_its_load_balancer() -> None:
    config, issues = config_from_instances([
        instance(*TCP), instance(*TCP, id="db-2", node="node-2", address="10.0.0.6")], options())

    assert not issues
    assert tcp_servers(config, "db") == ["10.0.0.5:5432", "10.0.0.6:5432"]


def test_a_router_two_instances_define_differently_is_left_out_with_an_error() -> None:
    config, issues = config_from_instances([
        instance(*TCP), instance("traefik.tcp.routers.db.rule=HostSNI(`x`)", id="db-2")],
        options())

    assert "db" not in config.tcp.routers
    assert [i.path for i in issues] == ["tcp.routers.db"]
    assert "different configurations" in issues[0].message


def test_an_http_service_gets_a_url_and_the_default_rule() -> None:
    config, _ = config_from_instances([instance(name="My_App")], options())

    assert config.http["services"]["My-App"]["loadBalancer"]["servers"] == [
        {"url": "http://10.0.0.5:5432"}]
    assert config.http["routers"]["My-App"] == {"rule": "Host(`My-App`)", "service": "My-App"}


def test_the_default_rule_template_reads_the_name_and_labels() -> None:
    config, _ = config_from_instances([instance("traefik.domain=example.org")], options(
        defaultRule='Host(`{{ .Name }}.{{ index .Labels "traefik.domain" }}`)'))

    assert config.http["routers"]["db"]["rule"] == "Host(`db.example.org`)"


def test_a_url_tag_with_a_port_tag_leaves_the_instance_out() -> None:
    config, issues = config_from_instances([instance(
        "traefik.http.services.db.loadbalancer.server.url=http://x:1",
        "traefik.http.services.db.loadbalancer.server.port=2")], options())

    assert not config.http
    assert "scheme or port is not allowed when URL is defined" in issues[0].message


@pytest.mark.parametrize(("status", "checks", "kept"), [
    ("passing", ["passing", "warning"], True),
    ("warning", ["passing", "warning"], True),
    ("critical", ["passing", "warning"], False),
    ("maintenance", ["passing", "warning"], False),
    ("warning", ["passing"], False),
    ("critical", ["any"], True),
    ("CRITICAL", ["Critical"], True),
])
def test_strict_checks_keep_instances_by_their_status(
        status: str, checks: list[str], kept: bool) -> None:
    config, _ = config_from_instances([instance(*TCP, status=status)],
                                      options(strictChecks=checks))

    assert ("db" in config.tcp.routers) is kept


def test_the_worst_check_decides_and_maintenance_beats_everything() -> None:
    passing = {"CheckID": "serfHealth", "Status": "passing"}
    warning = {"CheckID": "service:a", "Status": "warning"}
    critical = {"CheckID": "service:b", "Status": "critical"}
    maintenance = {"CheckID": "_service_maintenance:a", "Status": "critical"}

    assert aggregated_status([]) == "passing"
    assert aggregated_status([passing, warning]) == "warning"
    assert aggregated_status([warning, critical, passing]) == "critical"
    assert aggregated_status([passing, maintenance]) == "maintenance"
    assert aggregated_status([{"CheckID": "x", "Status": "unknown"}]) == ""


def test_health_entries_use_the_node_address_when_the_service_has_none() -> None:
    entries = [{"Node": {"Node": "n1", "Address": "10.1.1.1", "Datacenter": "dc1"},
                "Service": {"ID": "web-1", "Service": "web", "Address": "", "Port": 80,
                            "Tags": ["a"]},
                "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]}]

    [found] = instances_from_health("web", entries)

    assert (found.address, found.port, found.namespace, found.tags) == (
        "10.1.1.1", "80", "default", ("a",))


def test_disabled_and_connect_instances_are_left_out_and_a_bad_enable_is_said() -> None:
    config, issues = config_from_instances([
        instance(*TCP, "traefik.enable=false"),
        instance(*TCP, "traefik.consulcatalog.connect=true", id="db-2"),
        instance(*TCP, "traefik.enable=maybe", id="db-3"),
    ], options())

    assert not config.tcp.routers
    assert [i.message for i in issues] == [
        "left out: traefik.enable: 'maybe' is not a boolean; use true or false"]


def test_exposed_by_default_false_needs_the_enable_tag() -> None:
    config, _ = config_from_instances([
        instance(*TCP), instance("traefik.tcp.routers.x.rule=HostSNI(`x`)",
                                 "traefik.enable=true", id="db-2", name="x")],
        options(exposedByDefault=False))

    assert list(config.tcp.routers) == ["x"]


# --- properties ---------------------------------------------------------------------------

TAGS = st.sampled_from(["a", "b", "team-a", "v1"])


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> tuple[str, Any]:
    """A constraint expression and the Python function it must equal."""
    choice = draw(st.integers(0, 4 if depth < 3 else 1))
    if choice == 0:
        tag = draw(TAGS)
        return f"Tag(`{tag}`)", lambda tags: tag in tags
    if choice == 1:
        prefix = draw(TAGS)
        return f"TagRegex(`^{prefix}`)", lambda tags: any(t.startswith(prefix) for t in tags)
    if choice == 2:
        text, inner = draw(expressions(depth + 1))
        return f"!({text})", lambda tags: not inner(tags)
    (left, lf), (right, rf) = draw(expressions(depth + 1)), draw(expressions(depth + 1))
    if choice == 3:
        return f"({left}) && ({right})", lambda tags: lf(tags) and rf(tags)
    return f"({left}) || ({right})", lambda tags: lf(tags) or rf(tags)


@given(expressions(), st.lists(TAGS, max_size=4))
def test_a_tag_constraint_means_what_its_boolean_reading_says(
        expression: tuple[str, Any], tags: list[str]) -> None:
    text, meaning = expression

    assert compile_tag_constraints(text)(tags) == meaning(tags)


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=30))
def test_a_default_rule_without_actions_is_its_own_text(text: str) -> None:
    assert compile_default_rule(text)({"Name": "x", "Labels": {}}) == text


@given(st.text(max_size=30))
def test_normalize_of_the_name_matches_the_pipeline_form(name: str) -> None:
    data = {"Name": name, "Labels": {}}

    assert compile_default_rule("{{ normalize .Name }}")(data) == normalize_name(name)
    assert compile_default_rule("{{ .Name | normalize }}")(data) == normalize_name(name)
