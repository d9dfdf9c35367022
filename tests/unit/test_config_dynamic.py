"""Dynamic configuration models: Traefik's keys, spellings and defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchyard.config.dynamic import (
    ClientAuth,
    DynamicConfig,
    HealthCheck,
    InFlightConn,
    IPAllowList,
    LoadBalancer,
    ProxyProtocol,
    RouterTLS,
    ServersTransport,
    TCPMiddleware,
    TCPRouter,
    TCPService,
    TLSOptions,
    TransportTLS,
    Weighted,
    WeightedService,
)


def test_router_defaults_match_traefik() -> None:
    router = TCPRouter()
    assert router.entry_points == []  # filled with the default entry points later
    assert router.rule == ""  # "router has no rule" is the builder's error, not ours
    assert router.rule_syntax == ""
    assert router.priority == 0
    assert router.middlewares == []
    assert router.service == ""
    assert router.tls is None


def test_router_tls_defaults_match_traefik() -> None:
    tls = RouterTLS()
    assert (tls.passthrough, tls.options, tls.cert_resolver, tls.domains) == (False, "", "", [])


def test_service_defaults_match_traefik() -> None:
    balancer = LoadBalancer()
    assert balancer.servers == []
    assert balancer.servers_transport == ""
    assert balancer.health_check is None
    assert balancer.proxy_protocol is None
    assert balancer.termination_delay is None
    service = TCPService()
    assert service.load_balancer is None
    assert service.weighted is None
    assert WeightedService(name="child").weight is None  # counts as 1 when built


def test_health_check_defaults_match_traefik() -> None:
    check = HealthCheck()
    assert (check.port, check.send, check.expect) == (0, "", "")
    assert check.interval == 30.0
    assert check.unhealthy_interval is None
    assert check.timeout == 5.0


def test_empty_proxy_protocol_block_means_version_2() -> None:
    assert ProxyProtocol.model_validate({}).version == 2


def test_middleware_defaults_match_traefik() -> None:
    assert InFlightConn().amount == 0
    assert IPAllowList().source_range == []
    middleware = TCPMiddleware()
    assert (middleware.in_flight_conn, middleware.ip_allow_list, middleware.ip_white_list) == (
        None,
        None,
        None,
    )


def test_servers_transport_defaults_match_traefik() -> None:
    transport = ServersTransport()
    assert transport.dial_timeout == 30.0
    assert transport.dial_keep_alive == 15.0
    assert transport.termination_delay == 0.1
    assert transport.proxy_protocol is None
    assert transport.tls is None
    tls = TransportTLS()
    assert (tls.server_name, tls.insecure_skip_verify, tls.peer_cert_uri) == ("", False, "")
    assert (tls.root_cas, tls.certificates, tls.peer_cert_sans, tls.spiffe) == ([], [], [], None)


def test_tls_options_defaults_match_traefik() -> None:
    options = TLSOptions()
    assert options.min_version == "VersionTLS12"
    assert options.max_version == ""
    assert options.cipher_suites == []
    assert options.curve_preferences == []
    assert options.client_auth is None
    assert options.sni_strict is False
    assert options.alpn_protocols == ["h2", "http/1.1", "acme-tls/1"]
    assert options.disable_session_tickets is False
    assert options.prefer_server_cipher_suites is False
    assert ClientAuth().client_auth_type == "NoClientCert"


@pytest.mark.parametrize("key", ["entryPoints", "entrypoints", "ENTRYPOINTS", "entry_points"])
def test_keys_match_case_insensitively(key: str) -> None:
    assert TCPRouter.model_validate({key: ["web"]}).entry_points == ["web"]


def test_nested_keys_match_case_insensitively() -> None:
    service = TCPService.model_validate(
        {"LOADBALANCER": {"servers": [{"ADDRESS": "10.0.0.1:80"}], "healthcheck": {}}}
    )
    assert service.load_balancer is not None
    assert service.load_balancer.servers[0].address == "10.0.0.1:80"
    assert service.load_balancer.health_check == HealthCheck()


def test_irregular_traefik_spellings_are_accepted_and_dumped() -> None:
    raw = {"rootCAs": ["ca.pem"], "peerCertURI": "spiffe://x", "peerCertSANs": []}
    tls = TransportTLS.model_validate(raw)
    assert tls.root_cas == ["ca.pem"]
    assert tls.peer_cert_uri == "spiffe://x"
    dumped = tls.model_dump(by_alias=True)
    assert {"rootCAs", "peerCertURI", "peerCertSANs"} <= dumped.keys()


def test_snake_case_field_names_work_from_python() -> None:
    router = TCPRouter(entry_points=["web"], rule="HostSNI(`*`)", service="svc")
    assert router.entry_points == ["web"]


def test_present_tls_block_makes_a_tls_router_even_when_empty() -> None:
    router = TCPRouter.model_validate({"rule": "HostSNI(`*`)", "tls": {}})
    assert router.tls == RouterTLS()


def test_null_tls_is_skipped_as_traefiks_decoder_does() -> None:
    router = TCPRouter.model_validate({"rule": "HostSNI(`*`)", "tls": None})
    assert router.tls is None


def test_absent_tls_block_makes_a_plain_router() -> None:
    assert TCPRouter.model_validate({"rule": "HostSNI(`*`)"}).tls is None


def test_present_empty_weighted_health_check_is_kept() -> None:
    weighted = Weighted.model_validate({"services": [{"name": "a"}], "healthCheck": {}})
    assert weighted.health_check is not None
    assert Weighted.model_validate({"services": []}).health_check is None


def test_null_scalar_means_the_default() -> None:
    router = TCPRouter.model_validate({"priority": None, "entryPoints": None, "rule": None})
    assert (router.priority, router.entry_points, router.rule) == (0, [], "")


def test_comma_separated_scalar_is_a_list_as_in_traefik() -> None:
    router = TCPRouter.model_validate({"entryPoints": "web, ssh", "middlewares": "allow"})
    assert router.entry_points == ["web", "ssh"]
    assert router.middlewares == ["allow"]


def test_numbers_given_for_strings_are_read_as_text() -> None:
    router = TCPRouter.model_validate({"service": 42, "tls": {"options": 1}})
    assert router.service == "42"
    assert router.tls is not None
    assert router.tls.options == "1"


def test_numeric_strings_are_accepted_for_integers() -> None:
    assert TCPRouter.model_validate({"priority": "12"}).priority == 12


def test_bad_integer_is_a_validation_error_at_its_key() -> None:
    with pytest.raises(ValidationError) as caught:
        TCPRouter.model_validate({"priority": "high"})
    assert caught.value.errors()[0]["loc"] == ("priority",)


def test_unknown_keys_are_kept_aside_and_have_no_effect() -> None:
    router = TCPRouter.model_validate({"rule": "HostSNI(`*`)", "entrypoint": ["web"]})
    assert router.entry_points == []
    assert router.model_extra == {"entrypoint": ["web"]}


def test_durations_accept_traefik_forms() -> None:
    transport = ServersTransport.model_validate(
        {"dialTimeout": "1m30s", "dialKeepAlive": 5, "terminationDelay": "-1s"}
    )
    assert (transport.dial_timeout, transport.dial_keep_alive) == (90.0, 5.0)
    assert transport.termination_delay == -1.0


def test_models_are_frozen() -> None:
    router = TCPRouter()
    with pytest.raises(ValidationError):
        router.priority = 3


def test_weighted_child_needs_a_name() -> None:
    with pytest.raises(ValidationError):
        WeightedService.model_validate({"weight": 2})


def test_whole_document_validates_tcp_and_tls_and_keeps_http_raw() -> None:
    config = DynamicConfig.model_validate(
        {
            "tcp": {
                "routers": {"db": {"rule": "HostSNI(`db.example.com`)", "tls": {}}},
                "serversTransports": {"slow": {"dialTimeout": "2m"}},
            },
            "tls": {
                "certificates": [{"certFile": "a.crt", "keyFile": "a.key"}],
                "options": {"modern": {"minVersion": "VersionTLS13"}},
                "stores": {"default": {"defaultCertificate": {"certFile": "c", "keyFile": "k"}}},
            },
            "http": {"routers": {"web": {"rule": "Host(`x`)"}}},
        }
    )
    assert config.tcp.routers["db"].tls == RouterTLS()
    assert config.tcp.servers_transports["slow"].dial_timeout == 120.0
    assert config.tls.certificates[0].cert_file == "a.crt"
    assert config.tls.options["modern"].min_version == "VersionTLS13"
    default_certificate = config.tls.stores["default"].default_certificate
    assert default_certificate is not None
    assert default_certificate.key_file == "k"
    assert config.http == {"routers": {"web": {"rule": "Host(`x`)"}}}
    assert config.udp == {}


def test_dumped_models_validate_back_to_equal_models() -> None:
    config = DynamicConfig.model_validate(
        {
            "tcp": {
                "routers": {"plain": {"rule": "HostSNI(`*`)"}, "secure": {"tls": {}}},
                "serversTransports": {"t": {"terminationDelay": "150ms", "dialTimeout": "1.5s"}},
            }
        }
    )
    dumped = config.model_dump(by_alias=True, exclude_none=True)
    assert DynamicConfig.model_validate(dumped) == config
