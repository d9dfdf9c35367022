"""Traefik's TCP CRDs, read from manifests, turned into the kubernetescrd configuration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.loader import ConfigIssue, ConfigLoadError, load_dynamic
from switchyard.providers.base import ProviderUpdate
from switchyard.providers.kubernetes import (
    KubernetesCRDOptions,
    KubernetesCRDProvider,
    config_from_manifests,
    make_router_key,
    read_manifests,
)
from tests.harness import LoopThread

DOCS = Path(__file__).parent.parent / "fixtures" / "providers" / "traefik-docs"

BACKEND = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-x1
  namespace: default
  labels: {kubernetes.io/service-name: db}
ports: [{name: pg, port: 15432}]
endpoints:
  - addresses: [10.0.0.1]
    conditions: {ready: true}
  - addresses: [10.0.0.2]
    conditions: {ready: false}
  - addresses: [10.0.0.3]
"""


def route(match: str = "HostSNI(`*`)", **extra: Any) -> str:
    services = extra.pop("services", "[{name: db, port: pg}]")
    lines = [f"  - match: {match}", f"    services: {services}"]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines)


def ingress(name: str = "db", *routes: str, namespace: str = "default", spec: str = "") -> str:
    return (f"apiVersion: traefik.io/v1alpha1\nkind: IngressRouteTCP\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\n"
            f"spec:\n  entryPoints: [ep]\n{spec}  routes:\n" + "\n".join(routes or (route(),)))


def build(tmp_path: Path, *documents: str, **options: Any
          ) -> tuple[DynamicConfig, list[ConfigIssue]]:
    path = tmp_path / "manifests.yaml"
    path.write_text("\n---\n".join(documents))
    manifests, issues = read_manifests(str(path))
    config, found = config_from_manifests(manifests, KubernetesCRDOptions(**options))
    return config, issues + found


def addresses(config: DynamicConfig, service: str) -> list[str]:
    balancer = config.tcp.services[service].load_balancer
    assert balancer is not None
    return [server.address for server in balancer.servers]


def test_router_names_are_traefiks_namespace_ingress_and_rule_hash() -> None:
    assert make_router_key("default", "test.route", "HostSNI(`foo.com`)") == (
        "default-test.route-fdd3e9338e47a45efefc")


@pytest.mark.parametrize("example", sorted(p.name for p in DOCS.glob("*.crd.yaml")))
def test_every_documented_crd_example_loads_without_errors(example: str) -> None:
    manifests, issues = read_manifests(str(DOCS / example))
    config, found = config_from_manifests(manifests, KubernetesCRDOptions())

    assert not [i for i in issues + found if i.severity == "error"], issues + found
    assert config.tcp.middlewares


def test_the_documented_ingressroutetcp_resolves_every_reference() -> None:
    manifests, _ = read_manifests(str(DOCS / "ingressroutetcp.crd.yaml"))
    config, _ = config_from_manifests(manifests, KubernetesCRDOptions())

    key = make_router_key("default", "ingressroutetcpfoo", "HostSNI(`*`)")
    router = config.tcp.routers[key]
    assert (router.entry_points, router.priority, router.service) == (["footcp"], 10, key)
    assert router.middlewares == ["default-middleware1"]
    assert router.tls is not None and router.tls.options == "default-opt"
    assert router.tls.cert_resolver == "foo" and router.tls.domains[0].main == "example.net"
    balancer = config.tcp.services[key].load_balancer
    assert balancer is not None and balancer.servers_transport == "default-transport"
    assert balancer.proxy_protocol is not None and balancer.proxy_protocol.version == 1
    assert addresses(config, key) == ["127.0.0.1:8080"]  # nativeLB: the Service's clusterIP
    assert config.tcp.servers_transports["default-transport"].dial_timeout == 42
    assert config.tls.options["default-opt"].sni_strict is True
    assert "placeholder" in config.tls.certificates[0].cert_file


@pytest.mark.parametrize("example", ["ipallowlist", "inflightconn"])
def test_documented_crd_examples_equal_their_yaml_form_under_namespaced_names(
        example: str) -> None:
    manifests, _ = read_manifests(str(DOCS / f"{example}.crd.yaml"))
    from_crd, _ = config_from_manifests(manifests, KubernetesCRDOptions())
    from_yaml, _ = load_dynamic(filename=str(DOCS / f"{example}.yaml"))

    assert {f"default-{k}": v for k, v in from_yaml.tcp.middlewares.items()} == (
        from_crd.tcp.middlewares)


def test_ready_endpoints_of_the_service_port_become_the_servers(tmp_path: Path) -> None:
    config, issues = build(tmp_path, ingress(), BACKEND)

    assert issues == []
    key = make_router_key("default", "db", "HostSNI(`*`)")
    # Not-ready addresses are skipped; an absent "ready" counts as ready, as Kubernetes reads it.
    assert addresses(config, key) == ["10.0.0.1:15432", "10.0.0.3:15432"]


def test_legacy_endpoints_objects_are_read_too(tmp_path: Path) -> None:
    endpoints = """
apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: default}
subsets:
  - addresses: [{ip: 10.1.0.1}]
    ports: [{name: pg, port: 6432}]
"""
    service = BACKEND.split("---")[0]
    config, _ = build(tmp_path, ingress(), service, endpoints)

    assert addresses(config, make_router_key("default", "db", "HostSNI(`*`)")) == [
        "10.1.0.1:6432"]


def test_several_services_make_a_weighted_service_of_per_service_balancers(
        tmp_path: Path) -> None:
    two = "[{name: db, port: pg, weight: 3}, {name: db, port: 5432}]"
    config, _ = build(tmp_path, ingress("db", route(services=two)), BACKEND)

    key = make_router_key("default", "db", "HostSNI(`*`)")
    weighted = config.tcp.services[key].weighted
    assert weighted is not None
    assert [(s.name, s.weight) for s in weighted.services] == [
        (f"{key}-db-pg", 3), (f"{key}-db-5432", 1)]
    assert addresses(config, f"{key}-db-pg") == ["10.0.0.1:15432", "10.0.0.3:15432"]


def test_a_route_without_match_is_reported_at_its_field_and_the_others_load(
        tmp_path: Path) -> None:
    broken = "  - services: [{name: db, port: pg}]"
    config, issues = build(tmp_path, ingress("db", broken, route("HostSNI(`ok.example`)")),
                           BACKEND)

    assert [(i.source.split(": ")[-1], i.path, i.message) for i in issues] == [
        ("IngressRouteTCP default/db", "spec.routes[0].match", "required field is missing")]
    assert list(config.tcp.routers) == [make_router_key("default", "db", "HostSNI(`ok.example`)")]


def test_a_service_reference_without_port_is_reported_and_its_router_kept(
        tmp_path: Path) -> None:
    config, issues = build(tmp_path, ingress("db", route(services="[{name: db}]")), BACKEND)

    assert [(i.path, i.severity) for i in issues] == [("spec.routes[0].services[0].port", "error")]
    assert config.tcp.routers == {}


def test_an_unknown_service_is_reported_and_the_router_points_at_nothing(tmp_path: Path) -> None:
    config, issues = build(tmp_path, ingress())

    key = make_router_key("default", "db", "HostSNI(`*`)")
    assert [i.path for i in issues] == ["spec.routes[0].services[0]"]
    assert "service default/db not found" in issues[0].message
    assert config.tcp.routers[key].service == key and key not in config.tcp.services


def test_external_name_services_need_to_be_allowed(tmp_path: Path) -> None:
    external = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {type: ExternalName, externalName: db.example.net, ports: [{name: pg, port: 5432}]}
"""
    _, refused = build(tmp_path, ingress(), external)
    config, issues = build(tmp_path, ingress(), external, allow_external_name_services=True)

    assert "allowExternalNameServices" in refused[0].message
    assert issues == []
    assert addresses(config, make_router_key("default", "db", "HostSNI(`*`)")) == [
        "db.example.net:5432"]


def test_middleware_references_are_namespaced_and_cross_namespace_needs_permission(
        tmp_path: Path) -> None:
    same = route(middlewares="[{name: limit}, {name: shared@file}]")
    other = route("HostSNI(`other`)", middlewares="[{name: limit, namespace: infra}]")

    config, issues = build(tmp_path, ingress("db", same, other), BACKEND)

    routers = config.tcp.routers
    assert routers[make_router_key("default", "db", "HostSNI(`*`)")].middlewares == [
        "default-limit", "shared@file"]
    assert make_router_key("default", "db", "HostSNI(`other`)") not in routers
    assert "allowCrossNamespace" in issues[0].message

    allowed, _ = build(tmp_path, ingress("db", other), BACKEND, allow_cross_namespace=True)
    assert allowed.tcp.routers[make_router_key("default", "db", "HostSNI(`other`)")
                               ].middlewares == ["infra-limit"]


def test_a_default_tls_option_in_two_namespaces_is_dropped(tmp_path: Path) -> None:
    option = "apiVersion: traefik.io/v1alpha1\nkind: TLSOption\nmetadata: {{name: default, " \
             "namespace: {}}}\nspec: {{minVersion: VersionTLS13}}"

    single, _ = build(tmp_path, option.format("a"))
    both, issues = build(tmp_path, option.format("a"), option.format("b"))

    assert single.tls.options["default"].min_version == "VersionTLS13"
    assert "default" not in both.tls.options
    assert [i.path for i in issues] == ["tls.options.default"]


def test_a_middleware_with_a_bad_value_is_reported_inside_its_spec(tmp_path: Path) -> None:
    middleware = ("apiVersion: traefik.io/v1alpha1\nkind: MiddlewareTCP\n"
                  "metadata: {name: limit}\nspec: {inFlightConn: {amount: lots}}")

    config, issues = build(tmp_path, middleware)

    assert config.tcp.middlewares == {}
    assert [(i.source.split(": ")[-1], i.path) for i in issues] == [
        ("MiddlewareTCP default/limit", "spec.inFlightConn.amount")]


def test_namespaces_ingress_class_and_label_selector_filter_the_objects(tmp_path: Path) -> None:
    labelled = ingress("a", spec="").replace("namespace: default}",
                                             "namespace: default, labels: {team: db}}")
    classed = ingress("b", route("HostSNI(`b`)"), spec="  ingressClassName: internal\n")
    elsewhere = ingress("c", namespace="other")
    documents = (labelled, classed, elsewhere, BACKEND)

    def names(**options: Any) -> set[str]:
        config, _ = build(tmp_path, *documents, **options)
        return {key.split("-")[1] for key in config.tcp.routers}

    assert names() == {"a", "c"}
    assert names(namespaces=["default"]) == {"a"}
    assert names(ingress_class="internal") == {"b"}
    assert names(label_selector="team=db") == {"a"}


def test_an_unparsable_manifest_file_keeps_the_last_good_configuration(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")

    with pytest.raises(ConfigLoadError, match="bad.yaml"):
        read_manifests(str(tmp_path))
    update = KubernetesCRDProvider(KubernetesCRDOptions(manifests=str(tmp_path))).load()
    assert update.config is None and "invalid YAML" in update.error


def test_the_provider_watches_the_manifest_directory(tmp_path: Path) -> None:
    (tmp_path / "backend.yaml").write_text(BACKEND)
    provider = KubernetesCRDProvider(KubernetesCRDOptions(manifests=str(tmp_path)))
    updates: list[ProviderUpdate] = []
    loop = LoopThread()
    try:
        loop.loop.call_soon_threadsafe(lambda: loop.loop.create_task(
            provider.watch(updates.append)))
        time.sleep(0.3)  # the watch is set up
        (tmp_path / "route.yaml").write_text(ingress())
        deadline = time.monotonic() + 5
        while not (updates and updates[-1].config and updates[-1].config.tcp.routers):
            assert time.monotonic() < deadline, updates
            time.sleep(0.05)
    finally:
        loop.stop()


def test_an_ingress_route_left_out_for_its_ingress_class_is_said(tmp_path: Path) -> None:
    classed = ingress("b", route("HostSNI(`b`)"), spec="  ingressClassName: internal\n")

    config, issues = build(tmp_path, classed, BACKEND)
    assert config.tcp.routers == {}
    [issue] = issues
    assert (issue.source.split(": ")[-1], issue.path, issue.severity) == (
        "IngressRouteTCP default/b", "spec.ingressClassName", "warning")
    assert issue.message == (
        'IngressRouteTCP left out: its ingress class is "internal", this provider reads none '
        'or "traefik" (providers.kubernetesCRD.ingressClass is not set); set '
        "providers.kubernetesCRD.ingressClass: internal to route it")

    config, issues = build(tmp_path, ingress("a"), BACKEND, ingress_class="internal")
    assert config.tcp.routers == {}
    assert [i.message for i in issues] == [(
        'IngressRouteTCP left out: its ingress class is none, this provider reads "internal"; '
        "set spec.ingressClassName: internal to route it")]
