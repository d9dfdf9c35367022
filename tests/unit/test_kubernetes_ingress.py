"""networking.k8s.io/v1 Ingresses, with Traefik's annotations, as the kubernetesIngress provider reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.http import HTTPSection
from switchyard.config.loader import ConfigIssue
from switchyard.providers.kubeobjects import manifest_from_object, read_manifests
from switchyard.providers.kubernetes_ingress import (
    KubernetesIngressOptions,
    KubernetesIngressProvider,
    config_from_ingresses,
)
from switchyard.rules.http import parse_http_rule

BACKEND = """
apiVersion: v1
kind: Service
metadata: {name: whoami, namespace: apps}
spec:
  clusterIP: 10.96.0.9
  ports: [{name: web, port: 80}, {name: tls, port: 443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: whoami-1, namespace: apps, labels: {kubernetes.io/service-name: whoami}}
ports: [{name: web, port: 8080}, {name: tls, port: 8443}]
endpoints:
  - addresses: [10.1.0.1]
  - addresses: [10.1.0.2]
    conditions: {serving: false}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik-lb}
spec: {controller: traefik.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
"""


def ingress(paths: list[dict[str, Any]] | None = None, host: str = "foo.example.com",
            name: str = "web", annotations: dict[str, str] | None = None,
            **spec: Any) -> str:
    body: dict[str, Any] = dict(spec)
    if paths is not None:
        body["rules"] = [{"host": host, "http": {"paths": paths}} if host else
                         {"http": {"paths": paths}}]
    return yaml.safe_dump({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                           "metadata": {"name": name, "namespace": "apps",
                                        "annotations": annotations or {}},
                           "spec": body})


def path(value: str, kind: str | None = "Prefix", port: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": value, "backend": {"service": {
        "name": "whoami", "port": port or {"name": "web"}}}}
    if kind is not None:
        entry["pathType"] = kind
    return entry


def build(tmp_path: Path, *documents: str, **options: Any
          ) -> tuple[DynamicConfig, list[ConfigIssue]]:
    file = tmp_path / "ingress.yaml"
    file.write_text("\n---\n".join(documents))
    manifests, issues = read_manifests(str(file))
    config, found = config_from_ingresses(manifests, KubernetesIngressOptions(**options))
    HTTPSection.model_validate(config.http)
    return config, issues + found


def rules(config: DynamicConfig) -> dict[str, str]:
    return {name: router["rule"] for name, router in config.http.get("routers", {}).items()}


def test_path_types_map_to_traefiks_matchers_and_router_names(tmp_path: Path) -> None:
    config, issues = build(tmp_path, BACKEND, ingress([
        path("/bar"), path("/exact", "Exact"), path("/impl", None),
        path("/spec", "ImplementationSpecific")]))

    assert issues == []
    assert rules(config) == {
        "apps-web-foo-example-com-bar": 'Host("foo.example.com") && PathPrefix("/bar")',
        "apps-web-foo-example-com-exact": 'Host("foo.example.com") && Path("/exact")',
        "apps-web-foo-example-com-impl": 'Host("foo.example.com") && PathPrefix("/impl")',
        "apps-web-foo-example-com-spec": 'Host("foo.example.com") && PathPrefix("/spec")'}
    assert config.http["services"]["apps-whoami-web"] == {"loadBalancer": {
        "servers": [{"url": "http://10.1.0.1:8080"}]}}


def test_the_path_matcher_annotation_applies_to_implementation_specific_paths(
        tmp_path: Path) -> None:
    annotations = {"traefik.ingress.kubernetes.io/router.pathmatcher": "PathRegexp"}
    config, _ = build(tmp_path, BACKEND, ingress([path("^/v[0-9]+", None), path("/p")],
                                                 annotations=annotations))

    assert sorted(rules(config).values()) == [
        'Host("foo.example.com") && PathPrefix("/p")',
        'Host("foo.example.com") && PathRegexp("^/v[0-9]+")']


def test_strict_prefix_matching_matches_whole_path_elements(tmp_path: Path) -> None:
    config, _ = build(tmp_path, BACKEND, ingress([path("/v1/"), path("/")], host=""),
                      strict_prefix_matching=True)

    assert sorted(rules(config).values()) == ['(Path("/v1") || PathPrefix("/v1/"))',
                                              'PathPrefix("/")']


def test_router_annotations(tmp_path: Path) -> None:
    annotations = {f"traefik.ingress.kubernetes.io/router.{k}": v for k, v in {
        "entrypoints": "web,websecure", "middlewares": "apps-strip@kubernetescrd",
        "priority": "42", "tls": "true", "tls.certresolver": "le",
        "tls.domains.0.main": "example.com", "tls.domains.0.sans": "a.example.com",
        "tls.options": "apps-modern@kubernetescrd"}.items()}
    config, issues = build(tmp_path, BACKEND, ingress([path("/")], annotations=annotations))

    assert issues == []
    [router] = config.http["routers"].values()
    assert router == {
        "service": "apps-whoami-web", "entryPoints": ["web", "websecure"],
        "middlewares": ["apps-strip@kubernetescrd"], "priority": 42,
        "tls": {"certResolver": "le", "options": "apps-modern@kubernetescrd",
                "domains": [{"main": "example.com", "sans": ["a.example.com"]}]},
        "rule": 'Host("foo.example.com") && PathPrefix("/")'}


def test_service_annotations_and_the_https_port(tmp_path: Path) -> None:
    service = BACKEND.replace("metadata: {name: whoami, namespace: apps}", (
        "metadata:\n  name: whoami\n  namespace: apps\n  annotations:\n"
        "    traefik.ingress.kubernetes.io/service.sticky.cookie: 'true'\n"
        "    traefik.ingress.kubernetes.io/service.sticky.cookie.name: pin\n"
        "    traefik.ingress.kubernetes.io/service.passhostheader: 'false'\n"
        "    traefik.ingress.kubernetes.io/service.serverstransport: tight@file\n"
        "    traefik.ingress.kubernetes.io/service.middlewares: add@file"), 1)
    config, issues = build(tmp_path, service, ingress([path("/", port={"number": 443})]))

    assert issues == []
    assert config.http["services"]["apps-whoami-443"] == {
        "middlewares": ["add@file"],
        "loadBalancer": {"sticky": {"cookie": {"name": "pin"}}, "passHostHeader": False,
                         "serversTransport": "tight@file",
                         "servers": [{"url": "https://10.1.0.1:8443"}]}}


def test_two_paths_with_one_name_get_the_hash_of_their_rule(tmp_path: Path) -> None:
    # "/a-b" and "/a/b" normalize to the same router name.
    config, _ = build(tmp_path, BACKEND, ingress([path("/a-b"), path("/a/b")], host=""))

    names = sorted(rules(config))
    assert len(names) == 2 and all(n.startswith("apps-web-a-b-") for n in names)
    assert all(len(n.rsplit("-", 1)[1]) == 20 for n in names)


def test_a_default_backend_is_the_lowest_priority_catch_all(tmp_path: Path) -> None:
    config, _ = build(tmp_path, BACKEND, ingress(defaultBackend={"service": {
        "name": "whoami", "port": {"number": 80}}}))

    assert config.http["routers"] == {"default-router": {
        "rule": 'PathPrefix("/")', "ruleSyntax": "default", "priority": -2147483648,
        "service": "default-backend"}}
    assert "default-backend" in config.http["services"]


def test_ingress_classes_and_the_class_annotation_select_ingresses(tmp_path: Path) -> None:
    documents = [
        BACKEND, ingress([path("/")], name="plain"),
        ingress([path("/")], name="classed", ingressClassName="traefik-lb"),
        ingress([path("/")], name="nginx", ingressClassName="nginx"),
        ingress([path("/")], name="annotated",
                annotations={"kubernetes.io/ingress.class": "traefik"}),
        ingress([path("/")], name="other", annotations={"kubernetes.io/ingress.class": "x"})]

    def names(**options: Any) -> set[str]:
        config, _ = build(tmp_path, *documents, **options)
        return {name.split("-")[1] for name in rules(config)}

    assert names() == {"plain", "classed", "annotated"}
    assert names(ingress_class="traefik-lb") == {"classed"}
    assert names(ingress_class="x") == {"other"}
    assert names(disable_ingress_class_lookup=True) == {"plain", "annotated"}
    _, issues = build(tmp_path, *documents)
    assert {i.path for i in issues} == {"spec.ingressClassName",
                                        "metadata.annotations.kubernetes.io/ingress.class"}


def test_tls_secrets_become_certificates(tmp_path: Path) -> None:
    secret = yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                             "metadata": {"name": "cert", "namespace": "apps"},
                             "data": {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ"}})
    config, issues = build(tmp_path, BACKEND, secret, ingress(
        [path("/")], tls=[{"secretName": "cert"}, {"secretName": "missing"}]))

    assert [(c.cert_file, c.key_file) for c in config.tls.certificates] == [("CERT", "KEY")]
    assert [i.path for i in issues] == ["spec.tls[1].secretName"]


def test_problems_leave_the_path_out_and_say_why(tmp_path: Path) -> None:
    config, issues = build(tmp_path, BACKEND, ingress([
        path("/nope", port={"number": 9}), path("/ok"),
        {"path": "/r", "backend": {"resource": {"kind": "Bucket", "name": "b"}}}]))

    assert list(rules(config)) == ["apps-web-foo-example-com-ok"]
    assert ["no port 9" in issues[0].message, "resource backends" in issues[1].message] == [
        True, True]


def test_cross_provider_namespaces_limit_annotation_references(tmp_path: Path) -> None:
    annotations = {"traefik.ingress.kubernetes.io/router.middlewares": "m@file"}
    config, issues = build(tmp_path, BACKEND, ingress([path("/")], annotations=annotations),
                           cross_provider_namespaces=["infra"])

    assert rules(config) == {}
    assert "cross-provider middleware reference is not allowed" in issues[0].message


def test_the_manifest_provider_loads_a_directory(tmp_path: Path) -> None:
    (tmp_path / "backend.yaml").write_text(BACKEND)
    (tmp_path / "ingress.yaml").write_text(ingress([path("/")]))
    update = KubernetesIngressProvider(KubernetesIngressOptions(manifests=str(tmp_path))).load()

    assert update.provider == "kubernetes" and update.config is not None
    assert list(rules(update.config)) == ["apps-web-foo-example-com"]


# --- the rules Traefik would write parse, and say what the Ingress says --------------------

_SEGMENT = st.text("abcxyz019-._~", min_size=1, max_size=6)


@settings(max_examples=80, deadline=None)
@given(host=st.one_of(st.just(""), st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}",
                                                  fullmatch=True)),
       segments=st.lists(_SEGMENT, min_size=0, max_size=3), trailing=st.booleans(),
       kind=st.sampled_from(["Prefix", "Exact", "ImplementationSpecific"]),
       strict=st.booleans())
def test_every_generated_rule_parses_with_the_matchers_the_ingress_says(
        host: str, segments: list[str], trailing: bool, kind: str, strict: bool) -> None:
    value = "/" + "/".join(segments) + ("/" if trailing and segments else "")
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "gen", "namespace": "apps"},
            "spec": {"rules": [{"host": host, "http": {"paths": [path(value, kind)]}}]}}
    manifests = [m for m in (manifest_from_object(d, "gen", []) for d in
                             [body, *yaml.safe_load_all(BACKEND)]) if m is not None]
    config, issues = config_from_ingresses(manifests, KubernetesIngressOptions(
        strict_prefix_matching=strict))

    assert [i for i in issues if i.severity == "error"] == []
    [router] = config.http["routers"].values()
    rule = parse_http_rule(router["rule"])
    assert rule is not None
    assert router["rule"].count("Host(") == (1 if host else 0)
    assert ('Path("' in router["rule"]) == (kind == "Exact" or (
        strict and kind != "Exact" and value != "/"))
