"""The dynamic http section: Traefik's keys, spellings and defaults, on documentation examples."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from switchyard.config.http import (
    BALANCER_STRATEGIES,
    HTTP_MIDDLEWARE_TYPES,
    HTTP_SERVICE_TYPES,
    HTTPLoadBalancer,
    HTTPMiddleware,
    HTTPRouter,
    HTTPSection,
    HTTPServersTransport,
    HTTPService,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "http"


def fixture(name: str) -> dict[str, Any]:
    text = (FIXTURES / name).read_text()
    data = tomllib.loads(text) if name.endswith(".toml") else yaml.safe_load(text)
    section: dict[str, Any] = data["http"]
    return section


def unknown_keys(value: object, path: str = "http") -> list[str]:
    """Every key a model kept as extra (unknown), with its path."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}" for key in value.model_extra or {}]
        for name, info in type(value).model_fields.items():
            found += unknown_keys(getattr(value, name), f"{path}.{info.alias or name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += unknown_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += unknown_keys(item, f"{path}[{index}]")
    return found


def test_every_key_of_traefiks_reference_is_known() -> None:
    section = HTTPSection.model_validate(fixture("every-key.yaml"))
    assert unknown_keys(section) == []
    assert len(section.routers) == 2
    assert len(section.middlewares) == len(HTTP_MIDDLEWARE_TYPES)


def test_every_key_keeps_its_value() -> None:
    section = HTTPSection.model_validate(fixture("every-key.yaml"))
    router = section.routers["shop"]
    assert router.entry_points == ["web", "websecure"]
    assert router.priority == 42
    assert router.tls is not None and router.tls.options == "modern"
    assert router.tls.domains[0].sans == ["shop.example.org", "www.example.org"]
    assert router.observability is not None and router.observability.trace_verbosity == "detailed"
    assert section.routers["child"].parent_refs == ["shop"]
    lb = section.services["shop-lb"].load_balancer
    assert lb is not None
    assert lb.sticky is not None and lb.sticky.cookie is not None
    assert lb.sticky.cookie.http_only and lb.sticky.cookie.max_age == 3600
    assert lb.servers[0].preserve_path and lb.servers[0].weight == 3
    assert lb.servers[1].weight is None
    assert lb.health_check is not None and lb.health_check.unhealthy_interval == 2.0
    assert lb.health_check.headers == {"X-Probe": "1"}
    assert lb.passive_health_check is not None and lb.passive_health_check.failure_window == 30.0
    assert not lb.pass_host_header
    assert lb.response_forwarding.flush_interval == 0.25
    canary = section.services["canary"].weighted
    assert canary is not None and [s.weight for s in canary.services] == [9, 1]
    failover = section.services["resilient"].failover
    assert failover is not None and failover.errors is not None
    assert failover.errors.status == ["500-599", "429"]
    transport = section.servers_transports["backend-tls"]
    assert transport.disable_http2 and transport.max_idle_conns_per_host == 50
    assert transport.forwarding_timeouts is not None
    assert transport.forwarding_timeouts.response_header_timeout == 20.0
    assert transport.spiffe is not None and transport.spiffe.trust_domain == "example.org"
    assert transport.peer_cert_sans[0].value == "backend.internal"
    client_cert = section.middlewares["client-cert"]
    assert client_cert.kinds == ["passTLSClientCert"]
    assert client_cert.pass_tls_client_cert == {"pem": True}


def test_a_documented_toml_example_validates() -> None:
    section = HTTPSection.model_validate(fixture("services.toml"))
    assert unknown_keys(section) == []
    assert section.services["wrr1"].kinds == ["weighted"]
    whoami2 = section.services["whoami2"].load_balancer
    assert whoami2 is not None and whoami2.strategy == "leasttime"
    mirrored = section.services["mirrored"].mirroring
    assert mirrored is not None and mirrored.mirrors[0].percent == 10


def test_the_raw_http_dict_kept_by_the_loader_validates() -> None:
    from switchyard.config.loader import load_dynamic

    config, issues = load_dynamic(str(FIXTURES / "shared-entrypoint.yaml"))
    assert [i for i in issues if i.severity == "error"] == []
    section = HTTPSection.model_validate(config.http)
    assert unknown_keys(section) == []
    assert set(section.routers) == {"web-to-https", "app"}
    assert config.tcp.routers["database"].tls is not None
    app = section.services["app"].load_balancer
    assert app is not None and app.health_check is not None  # `healthcheck` spelled lower
    assert app.health_check.interval == 10.0


def test_router_defaults_are_traefiks() -> None:
    router = HTTPRouter()
    assert (router.rule, router.service, router.priority, router.rule_syntax) == ("", "", 0, "")
    assert router.entry_points == [] and router.middlewares == []
    assert router.tls is None and router.observability is None


def test_an_empty_tls_block_makes_an_https_router() -> None:
    router = HTTPRouter.model_validate({"rule": "Host(`a`)", "tls": {}})
    assert router.tls is not None and router.tls.options == ""


def test_load_balancer_defaults_are_traefiks() -> None:
    lb = HTTPLoadBalancer.model_validate({"servers": [{"url": "http://a"}]})
    assert lb.strategy == "wrr" and lb.strategy in BALANCER_STRATEGIES
    assert lb.pass_host_header is True
    assert lb.response_forwarding.flush_interval == 0.1
    assert lb.sticky is None and lb.health_check is None and lb.passive_health_check is None
    assert lb.servers_transport == ""


def test_a_null_pass_host_header_keeps_the_default() -> None:
    assert HTTPLoadBalancer.model_validate({"passHostHeader": None}).pass_host_header is True


def test_health_check_defaults_are_traefiks() -> None:
    lb = HTTPLoadBalancer.model_validate({"healthCheck": {}, "passiveHealthCheck": {}})
    check = lb.health_check
    assert check is not None
    assert (check.mode, check.interval, check.timeout, check.follow_redirects) == (
        "http", 30.0, 5.0, True)
    assert check.unhealthy_interval is None and check.method == "" and check.status == 0
    passive = lb.passive_health_check
    assert passive is not None
    assert (passive.failure_window, passive.max_failed_attempts) == (10.0, 1)


def test_sticky_cookie_defaults_to_the_root_path() -> None:
    lb = HTTPLoadBalancer.model_validate({"sticky": {"cookie": {}}})
    assert lb.sticky is not None and lb.sticky.cookie is not None
    cookie = lb.sticky.cookie
    assert (cookie.name, cookie.path, cookie.secure, cookie.http_only) == ("", "/", False, False)
    assert (cookie.same_site, cookie.max_age, cookie.domain) == ("", 0, "")


def test_service_kind_defaults_are_traefiks() -> None:
    mirroring = HTTPService.model_validate({"mirroring": {"service": "a"}}).mirroring
    assert mirroring is not None
    assert (mirroring.mirror_body, mirroring.max_body_size) == (True, -1)
    failover = HTTPService.model_validate({"failover": {"errors": {}}}).failover
    assert failover is not None and failover.errors is not None
    assert failover.errors.max_request_body_bytes == -1
    weighted = HTTPService.model_validate({"weighted": {"services": [{"name": "a"}]}}).weighted
    assert weighted is not None and weighted.services[0].weight == 1


def test_service_kinds_lists_what_is_set() -> None:
    both = HTTPService.model_validate({"loadBalancer": {}, "failover": {}})
    assert both.kinds == ["loadBalancer", "failover"]
    assert HTTPService().kinds == []
    assert set(HTTP_SERVICE_TYPES) == {
        "loadBalancer", "weighted", "mirroring", "failover", "highestRandomWeight"}


def test_servers_transport_defaults_are_traefiks() -> None:
    transport = HTTPServersTransport.model_validate({"forwardingTimeouts": {}})
    timeouts = transport.forwarding_timeouts
    assert timeouts is not None
    assert (timeouts.dial_timeout, timeouts.response_header_timeout) == (30.0, 0.0)
    assert (timeouts.idle_conn_timeout, timeouts.read_idle_timeout, timeouts.ping_timeout) == (
        90.0, 0.0, 15.0)
    # 0: Go's default of 2 idle connections per host, as Traefik's documentation says.
    assert transport.max_idle_conns_per_host == 0
    assert not transport.insecure_skip_verify and not transport.disable_http2
    assert HTTPServersTransport().forwarding_timeouts is None


def test_keys_are_case_insensitive_and_irregular_spellings_are_kept() -> None:
    transport = HTTPServersTransport.model_validate(
        {"DISABLEHTTP2": True, "rootcas": ["a"], "PeerCertURI": "spiffe://x", "ServerName": "b"}
    )
    assert transport.disable_http2 and transport.root_cas == ["a"]
    assert transport.peer_cert_uri == "spiffe://x" and transport.server_name == "b"
    dumped = transport.model_dump(by_alias=True)
    assert {"disableHTTP2", "rootCAs", "peerCertURI", "peerCertSANs"} <= set(dumped)


def test_label_style_text_values_are_read_as_traefik_reads_them() -> None:
    lb = HTTPLoadBalancer.model_validate({
        "passHostHeader": "false",
        "servers": [{"url": "http://a", "weight": "2", "preservePath": "true"}],
        "healthCheck": {"interval": "15", "timeout": "500ms", "port": "8080"},
    })
    assert lb.pass_host_header is False
    assert lb.servers[0].weight == 2 and lb.servers[0].preserve_path
    assert lb.health_check is not None
    assert (lb.health_check.interval, lb.health_check.timeout, lb.health_check.port) == (
        15.0, 0.5, 8080)
    router = HTTPRouter.model_validate({"entryPoints": "web, websecure", "priority": "7"})
    assert router.entry_points == ["web", "websecure"] and router.priority == 7


def test_middleware_types_are_kept_as_given_and_unknown_types_are_extra() -> None:
    middleware = HTTPMiddleware.model_validate(
        {"Headers": {"customRequestHeaders": {"X-A": "1"}}, "notAType": {"x": 1}}
    )
    assert middleware.kinds == ["headers"]
    assert middleware.headers == {"customRequestHeaders": {"X-A": "1"}}
    assert middleware.model_extra == {"notAType": {"x": 1}}


def test_an_empty_middleware_block_sets_the_type() -> None:
    assert HTTPMiddleware.model_validate({"compress": {}}).kinds == ["compress"]
    assert HTTPMiddleware.model_validate({"compress": None}).kinds == []


def test_several_middleware_types_are_all_listed() -> None:
    both = HTTPMiddleware.model_validate({"stripPrefix": {}, "addPrefix": {}})
    assert both.kinds == ["addPrefix", "stripPrefix"]


@pytest.mark.parametrize(
    ("model", "raw", "where"),
    [
        (HTTPRouter, {"priority": "high"}, "priority"),
        (HTTPLoadBalancer, {"servers": {"url": "x"}}, "servers"),
        (HTTPLoadBalancer, {"healthCheck": {"interval": "soon"}}, "interval"),
        (HTTPService, {"weighted": {"services": [{"weight": 1}]}}, "name"),
    ],
)
def test_wrong_values_are_refused_with_their_path(
    model: type[BaseModel], raw: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(raw)
    assert any(where in map(str, error["loc"]) for error in caught.value.errors())


def test_models_are_frozen() -> None:
    router = HTTPRouter(rule="Host(`a`)")
    with pytest.raises(ValidationError):
        router.rule = "Host(`b`)"  # type: ignore[misc]
