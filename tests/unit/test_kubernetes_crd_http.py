"""Traefik's HTTP CRDs (IngressRoute, Middleware, TraefikService, ServersTransport) from manifests."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.http import HTTPSection
from switchyard.config.loader import ConfigIssue, load_dynamic
from switchyard.providers.kubeobjects import manifest_from_object, read_manifests
from switchyard.providers.kubernetes import KubernetesCRDOptions, config_from_manifests
from switchyard.providers.kubernetes_http import http_router_key

BACKEND = """
apiVersion: v1
kind: Service
metadata: {name: whoami, namespace: default}
spec:
  clusterIP: 10.96.0.7
  ports: [{name: web, port: 80}, {name: https-web, port: 8443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-x1
  namespace: default
  labels: {kubernetes.io/service-name: whoami}
ports: [{name: web, port: 8080}, {name: https-web, port: 8443}]
endpoints:
  - addresses: [10.0.0.1]
    conditions: {ready: true, serving: true}
  - addresses: [10.0.0.2]
    conditions: {ready: false, serving: false}
  - addresses: ["fd00::3"]
"""


def crd(kind: str, name: str, spec: str, namespace: str = "default") -> str:
    return (f"apiVersion: traefik.io/v1alpha1\nkind: {kind}\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n"
            + "\n".join(f"  {line}" for line in spec.strip().splitlines()))


def route(match: str = "Host(`foo.com`)", services: str = "[{name: whoami, port: 80}]",
          **extra: str) -> str:
    lines = [f"- match: {match}", f"  services: {services}"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines)


def ingress_route(*routes: str, name: str = "web", spec: str = "") -> str:
    body = "entryPoints: [web]\n" + spec + "routes:\n" + "\n".join(
        "\n".join(f"  {line}" for line in r.splitlines()) for r in (routes or (route(),)))
    return crd("IngressRoute", name, body)


def secret(name: str, kind: str = "Opaque", **entries: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "type": kind,
                           "metadata": {"name": name, "namespace": "default"},
                           "stringData": entries})


def build(tmp_path: Path, *documents: str, **options: Any
          ) -> tuple[DynamicConfig, list[ConfigIssue]]:
    path = tmp_path / "manifests.yaml"
    path.write_text("\n---\n".join(documents))
    manifests, issues = read_manifests(str(path))
    config, found = config_from_manifests(manifests, KubernetesCRDOptions(**options))
    HTTPSection.model_validate(config.http)  # what the server builds from
    return config, issues + found


def urls(config: DynamicConfig, service: str) -> list[str]:
    return [s["url"] for s in config.http["services"][service]["loadBalancer"]["servers"]]


KEY = http_router_key("default", "web", "Host(`foo.com`)")


def test_router_names_are_traefiks_normalized_namespace_name_and_rule_hash() -> None:
    # The name Traefik's own tests give this IngressRoute's route.
    assert http_router_key("default", "test.route", "Host(`foo.com`) && PathPrefix(`/foo`)"
                           ) == "default-test-route-77c62dfe9517144aeeaa"


def test_a_route_with_one_service_gets_a_router_and_service_of_its_own_name(
        tmp_path: Path) -> None:
    config, issues = build(tmp_path, ingress_route(route(priority="12")), BACKEND)

    assert issues == []
    router = config.http["routers"][KEY]
    assert (router["rule"], router["entryPoints"], router["priority"], router["service"]) == (
        "Host(`foo.com`)", ["web"], 12, KEY)
    # Serving endpoints at the EndpointSlice's port; a not-serving one is left out.
    assert urls(config, KEY) == ["http://10.0.0.1:8080", "http://[fd00::3]:8080"]


def test_a_port_named_https_or_an_explicit_scheme_sets_the_servers_scheme(
        tmp_path: Path) -> None:
    named = route(services="[{name: whoami, port: https-web}]")
    h2c = route("Host(`h2c`)", services="[{name: whoami, port: 80, scheme: h2c}]")
    config, _ = build(tmp_path, ingress_route(named, h2c), BACKEND)

    assert urls(config, KEY)[0] == "https://10.0.0.1:8443"
    assert urls(config, http_router_key("default", "web", "Host(`h2c`)"))[0] == (
        "h2c://10.0.0.1:8080")


def test_several_services_make_a_weighted_service_of_namespace_service_port_children(
        tmp_path: Path) -> None:
    two = "[{name: whoami, port: 80, weight: 3}, {name: wrr, kind: TraefikService}]"
    config, _ = build(tmp_path, ingress_route(route(services=two)), BACKEND,
                      crd("TraefikService", "wrr", "weighted: {services: [{name: whoami, "
                          "port: web}]}"))

    services = config.http["services"]
    assert services[KEY] == {"weighted": {"services": [
        {"name": "default-whoami-80", "weight": 3}, {"name": "default-wrr", "weight": 1}]}}
    assert services["default-wrr"] == {"weighted": {"services": [
        {"name": "default-whoami-web", "weight": 1}]}}
    assert urls(config, "default-whoami-web") == urls(config, "default-whoami-80")


def test_a_single_traefik_service_reference_is_the_routers_service(tmp_path: Path) -> None:
    ref = route(services="[{name: wrr, kind: TraefikService}, ]")
    other = route("Host(`x`)", services="[{name: api@internal, kind: TraefikService}]")
    config, _ = build(tmp_path, ingress_route(ref, other), BACKEND)

    assert config.http["routers"][KEY]["service"] == "default-wrr"
    assert config.http["routers"][http_router_key("default", "web", "Host(`x`)")][
        "service"] == "api@internal"


def test_load_balancer_options_are_carried_over(tmp_path: Path) -> None:
    options = ("[{name: whoami, port: 80, strategy: p2c, passHostHeader: false, "
               "responseForwarding: {flushInterval: 1ms}, serversTransport: tight, "
               "sticky: {cookie: {name: pin, httpOnly: true}}, "
               "passiveHealthCheck: {maxFailedAttempts: 3}, middlewares: [{name: svc}]}]")
    config, issues = build(tmp_path, ingress_route(route(services=options)), BACKEND)

    assert issues == []
    service = config.http["services"][KEY]
    assert service["middlewares"] == ["default-svc"]
    balancer = service["loadBalancer"]
    assert {k: v for k, v in balancer.items() if k != "servers"} == {
        "strategy": "p2c", "passHostHeader": False,
        "responseForwarding": {"flushInterval": "1ms"}, "serversTransport": "default-tight",
        "sticky": {"cookie": {"name": "pin", "httpOnly": True}},
        "passiveHealthCheck": {"maxFailedAttempts": 3}}


def test_native_lb_uses_the_cluster_ip_and_health_checks_need_external_names(
        tmp_path: Path) -> None:
    native = route(services="[{name: whoami, port: 80, nativeLB: true}]")
    checked = route("Host(`hc`)", services="[{name: whoami, port: 80, healthCheck: {path: /}}]")
    config, issues = build(tmp_path, ingress_route(native, checked), BACKEND)

    assert urls(config, KEY) == ["http://10.96.0.7:80"]
    assert [i.path for i in issues] == ["spec.routes[1]"]
    assert "healthCheck allowed only for ExternalName services" in issues[0].message


def test_problems_leave_the_route_out_and_say_why(tmp_path: Path) -> None:
    missing = route(services="[{name: nowhere, port: 80}]")
    other_ns = route("Host(`b`)", services="[{name: whoami, namespace: other, port: 80}]")
    kind = route("Host(`c`)", kind="Regexp")
    config, issues = build(tmp_path, ingress_route(missing, other_ns, kind), BACKEND)

    assert config.http.get("routers", {}) == {}
    messages = [i.message for i in issues]
    assert "kubernetes service not found: default/nowhere" in messages[0]
    assert "not in the parent resource namespace default" in messages[1]
    assert 'unsupported match kind "Regexp"' in messages[2]


def test_middleware_references_and_tls_options_are_namespaced(tmp_path: Path) -> None:
    refs = route(middlewares="[{name: strip}, {name: auth@file}]")
    tls = "tls: {secretName: cert, options: {name: modern}, certResolver: le, " \
          "domains: [{main: foo.com}]}\n"
    config, issues = build(tmp_path, ingress_route(refs, spec=tls), BACKEND,
                           secret("cert", **{"tls.crt": "CERT", "tls.key": "KEY"}))

    assert issues == []
    router = config.http["routers"][KEY]
    assert router["middlewares"] == ["default-strip", "auth@file"]
    assert router["tls"] == {"certResolver": "le", "domains": [{"main": "foo.com", "sans": []}],
                             "options": "default-modern"}
    assert [(c.cert_file, c.key_file) for c in config.tls.certificates] == [("CERT", "KEY")]


def test_cross_namespace_middlewares_need_allow_cross_namespace(tmp_path: Path) -> None:
    refs = route(middlewares="[{name: strip, namespace: infra}]")

    refused, issues = build(tmp_path, ingress_route(refs), BACKEND)
    allowed, _ = build(tmp_path, ingress_route(refs), BACKEND, allow_cross_namespace=True)

    assert "routers" not in refused.http and "allowCrossNamespace" in issues[0].message
    assert allowed.http["routers"][KEY]["middlewares"] == ["infra-strip"]


def test_basic_auth_users_come_from_the_secret(tmp_path: Path) -> None:
    htpasswd = secret("users", users="alice:$apr1$x$y\n\nbob:{SHA}z\n")
    typed = secret("login", "kubernetes.io/basic-auth", username="carol", password="secret")
    config, issues = build(
        tmp_path, htpasswd, typed,
        crd("Middleware", "file-users", "basicAuth: {secret: users, realm: r}"),
        crd("Middleware", "typed", "basicAuth: {secret: login, removeHeader: true}"),
        crd("Middleware", "digest", "digestAuth: {secret: users}"))

    assert issues == []
    middlewares = config.http["middlewares"]
    assert middlewares["default-file-users"] == {"basicAuth": {
        "realm": "r", "users": ["alice:$apr1$x$y", "bob:{SHA}z"]}}
    # A basic-auth Secret's password is stored as htpasswd's {SHA}, as Traefik does.
    assert middlewares["default-typed"] == {"basicAuth": {
        "removeHeader": True, "users": ["carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="]}}
    assert middlewares["default-digest"]["digestAuth"]["users"] == [
        "alice:$apr1$x$y", "bob:{SHA}z"]


def test_an_auth_secret_with_several_entries_is_refused(tmp_path: Path) -> None:
    config, issues = build(tmp_path, secret("users", a="x:y", b="z:w"),
                           crd("Middleware", "auth", "basicAuth: {secret: users}"))

    assert "middlewares" not in config.http
    assert "found 2 elements for secret 'default/users'" in issues[0].message


def test_forward_auth_tls_and_redis_logins_are_read_from_secrets(tmp_path: Path) -> None:
    config, issues = build(
        tmp_path, secret("ca", **{"ca.crt": "CA"}),
        secret("client", **{"tls.crt": "C", "tls.key": "K"}),
        secret("redis", username="u", password="p"),
        crd("Middleware", "fa", "forwardAuth: {address: 'https://auth', tls: {caSecret: ca, "
            "certSecret: client, caOptional: true}}"),
        crd("Middleware", "rl", "rateLimit: {average: 5, redis: {endpoints: ['r:6379'], "
            "secret: redis, tls: {caSecret: ca}}}"))

    assert issues == []
    middlewares = config.http["middlewares"]
    assert middlewares["default-fa"]["forwardAuth"]["tls"] == {
        "caOptional": True, "ca": "CA", "cert": "C", "key": "K"}
    assert middlewares["default-rl"]["rateLimit"]["redis"] == {
        "endpoints": ["r:6379"], "tls": {"ca": "CA"}, "username": "u", "password": "p"}


def test_errors_service_and_chain_references(tmp_path: Path) -> None:
    config, issues = build(
        tmp_path, BACKEND,
        crd("Middleware", "oops", "errors: {status: ['500-599'], query: '/{status}', "
            "service: {name: whoami, port: 80}}"),
        crd("Middleware", "oops-ts", "errors: {status: ['404'], service: {name: pages, "
            "kind: TraefikService}}"),
        crd("Middleware", "both", "chain: {middlewares: [{name: oops}, {name: x@file}]}"))

    assert issues == []
    middlewares, services = config.http["middlewares"], config.http["services"]
    assert middlewares["default-oops"]["errors"]["service"] == "default-oops-errorpage-service"
    assert urls(config, "default-oops-errorpage-service") == ["http://10.0.0.1:8080",
                                                              "http://[fd00::3]:8080"]
    assert middlewares["default-oops-ts"]["errors"]["service"] == "default-pages"
    assert "default-pages" not in services
    assert middlewares["default-both"] == {"chain": {"middlewares": ["default-oops", "x@file"]}}


def test_traefik_service_mirroring_failover_and_highest_random_weight(tmp_path: Path) -> None:
    config, issues = build(
        tmp_path, BACKEND,
        crd("TraefikService", "mirror", "mirroring: {name: whoami, port: 80, mirrorBody: false, "
            "mirrors: [{name: whoami, port: web, percent: 10}]}"),
        crd("TraefikService", "fo", "failover: {service: {name: whoami, port: 80}, "
            "fallback: {name: mirror, kind: TraefikService}, errors: {status: ['502']}}"),
        crd("TraefikService", "hrw", "highestRandomWeight: {services: [{name: whoami, port: 80, "
            "weight: 2}]}"))

    assert issues == []
    services = config.http["services"]
    assert services["default-mirror"] == {"mirroring": {
        "service": "default-whoami-80", "mirrorBody": False,
        "mirrors": [{"name": "default-whoami-web", "percent": 10}]}}
    assert services["default-fo"] == {"failover": {
        "service": "default-whoami-80", "fallback": "default-mirror",
        "errors": {"status": ["502"]}}}
    assert services["default-hrw"] == {"highestRandomWeight": {"services": [
        {"name": "default-whoami-80", "weight": 2}]}}


def test_servers_transport_reads_cas_and_certificates_from_secrets(tmp_path: Path) -> None:
    spec = ("serverName: backend.internal\ninsecureSkipVerify: false\n"
            "rootCAsSecrets: [ca]\nrootCAs: [{secret: ca}, {configMap: missing}]\n"
            "certificatesSecrets: [client]\nmaxIdleConnsPerHost: 7\ndisableHTTP2: true\n"
            "forwardingTimeouts: {dialTimeout: 5s, responseHeaderTimeout: 10}\n"
            "minVersion: VersionTLS13\nmaxVersion: VersionTLS12")
    config, issues = build(tmp_path, secret("ca", only="CA"),
                           secret("client", **{"tls.crt": "C", "tls.key": "K"}),
                           crd("ServersTransport", "tight", spec))

    transport = config.http["serversTransports"]["default-tight"]
    assert transport["rootCAs"] == ["CA", "CA"]  # a Secret's only entry is its CA
    assert transport["certificates"] == [{"certFile": "C", "keyFile": "K"}]
    assert (transport["serverName"], transport["maxIdleConnsPerHost"],
            transport["disableHTTP2"]) == ("backend.internal", 7, True)
    assert transport["forwardingTimeouts"] == {"dialTimeout": "5s",
                                               "responseHeaderTimeout": 10}
    # As Traefik: a minimum not below the maximum falls back to TLS 1.2 and no maximum.
    assert transport["minVersion"] == "VersionTLS12" and "maxVersion" not in transport
    assert [i.path for i in issues] == ["spec.rootCAs[1]", "spec.minVersion"]


def test_native_lb_by_default_does_not_reach_traefik_services(tmp_path: Path) -> None:
    config, _ = build(tmp_path, BACKEND, ingress_route(),
                      crd("TraefikService", "wrr", "weighted: {services: [{name: whoami, "
                          "port: web}]}"), native_lb_by_default=True)

    assert urls(config, KEY) == ["http://10.96.0.7:80"]
    assert urls(config, "default-whoami-web")[0] == "http://10.0.0.1:8080"


def test_an_invalid_element_is_left_out_alone(tmp_path: Path) -> None:
    config, issues = build(tmp_path, BACKEND, ingress_route(route(priority="high")),
                           ingress_route(route("Host(`ok`)"), name="ok"))

    assert list(config.http["routers"]) == [http_router_key("default", "ok", "Host(`ok`)")]
    assert [i.path for i in issues] == ["spec.routes[0].priority"]


# --- the two code paths agree: a Middleware CRD and the file provider's form ---------------

_WORDS = st.text(string.ascii_lowercase + "/-", min_size=1, max_size=12).map(lambda s: "/" + s)
_SPECS = st.one_of(
    st.builds(lambda p: {"addPrefix": {"prefix": p}}, _WORDS),
    st.builds(lambda ps, f: {"stripPrefix": {"prefixes": ps, "forceSlash": f}},
              st.lists(_WORDS, min_size=1, max_size=3), st.booleans()),
    st.builds(lambda s, p: {"redirectScheme": {"scheme": s, "permanent": p}},
              st.sampled_from(["https", "http"]), st.booleans()),
    st.builds(lambda r: {"ipAllowList": {"sourceRange": r}},
              st.lists(st.sampled_from(["10.0.0.0/8", "127.0.0.1", "::1/128"]), min_size=1)),
    st.builds(lambda h: {"headers": {"customRequestHeaders": h}},
              st.dictionaries(st.sampled_from(["X-A", "X-B", "X-Env"]),
                              st.text(string.ascii_letters, max_size=8), max_size=3)),
    st.builds(lambda a, b: {"inFlightReq": {"amount": a}, "retry": {"attempts": b}},
              st.integers(1, 100), st.integers(1, 5)),
)


@settings(max_examples=60, deadline=None)
@given(spec=_SPECS, name=st.from_regex(r"[a-z][a-z0-9.-]{0,10}[a-z0-9]", fullmatch=True),
       namespace=st.sampled_from(["default", "team-a", "x.y"]))
def test_a_middleware_crd_equals_its_file_form_under_its_namespaced_name(
        spec: dict[str, Any], name: str, namespace: str, tmp_path_factory: Any) -> None:
    body = {"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    manifest = manifest_from_object(body, "test", [])
    assert manifest is not None
    from_crd, issues = config_from_manifests([manifest], KubernetesCRDOptions())
    file = tmp_path_factory.mktemp("file") / "dynamic.yaml"
    file.write_text(yaml.safe_dump({"http": {"middlewares": {name: spec}}}))
    from_file, _ = load_dynamic(filename=str(file))

    key = "-".join(part for part in namespace.replace(".", "-").split("-") + name.replace(
        ".", "-").split("-") if part)
    assert issues == []
    assert HTTPSection.model_validate(from_crd.http).middlewares == {
        key: HTTPSection.model_validate(from_file.http).middlewares[name]}
