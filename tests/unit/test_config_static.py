"""Static configuration models: entry points, addresses, default entry points, defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchyard.config.static import (
    UNIMPLEMENTED_PROVIDERS,
    EntryPoint,
    Providers,
    StaticConfig,
    TCPServersTransport,
    parse_entry_point_address,
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":8000", ("", 8000, "tcp")),
        ("0.0.0.0:80", ("0.0.0.0", 80, "tcp")),
        ("localhost:443", ("localhost", 443, "tcp")),
        ("[::]:8080", ("::", 8080, "tcp")),
        ("[::1]:8443", ("::1", 8443, "tcp")),
        ("[fe80::1%eth0]:53", ("fe80::1%eth0", 53, "tcp")),
        (":53/udp", ("", 53, "udp")),
        (":53/UDP", ("", 53, "udp")),
        ("127.0.0.1:25/Tcp", ("127.0.0.1", 25, "tcp")),
        (":0", ("", 0, "tcp")),
        (":65535", ("", 65535, "tcp")),
    ],
)
def test_entry_point_addresses_parse_like_traefik(
    address: str, expected: tuple[str, int, str]
) -> None:
    assert parse_entry_point_address(address) == expected


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8080", "missing port"),
        ("", "missing port"),
        ("localhost", "missing port"),
        (":", "missing port"),
        ("[::1]", "missing port"),
        ("[::1:8080", 'missing "]"'),
        ("::1:8080", "too many colons"),
        (":65536", "out of range"),
        (":99999", "out of range"),
        (":http", "not a number"),
        (":-1", "not a number"),
        (":80/sctp", 'unknown protocol "sctp"'),
        (":80/tcp/udp", "unknown protocol"),
        (":80/", "unknown protocol"),
    ],
)
def test_bad_entry_point_addresses_are_rejected_naming_the_address(
    address: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_entry_point_address(address)
    assert f'"{address}"' in str(caught.value)


def test_entry_point_with_bad_address_fails_validation() -> None:
    with pytest.raises(ValidationError, match="missing port"):
        EntryPoint.model_validate({"address": "8080"})


def test_entry_point_needs_an_address() -> None:
    with pytest.raises(ValidationError):
        EntryPoint.model_validate({})


def test_entry_point_defaults_match_traefik() -> None:
    entry_point = EntryPoint(address=":80")
    assert (entry_point.as_default, entry_point.reuse_port) == (False, False)
    assert entry_point.allow_acme_by_pass is False
    assert entry_point.proxy_protocol is None
    timeouts = entry_point.transport.responding_timeouts
    assert (timeouts.read_timeout, timeouts.write_timeout, timeouts.idle_timeout) == (
        60.0,
        0.0,
        180.0,
    )
    life_cycle = entry_point.transport.life_cycle
    assert (life_cycle.request_accept_grace_timeout, life_cycle.grace_time_out) == (0.0, 10.0)
    assert entry_point.protocol == "tcp"


def test_entry_point_proxy_protocol_keys() -> None:
    entry_point = EntryPoint.model_validate(
        {"address": ":25", "proxyProtocol": {"trustedIPs": ["10.0.0.0/8"], "insecure": "true"}}
    )
    assert entry_point.proxy_protocol is not None
    assert entry_point.proxy_protocol.trusted_ips == ["10.0.0.0/8"]
    assert entry_point.proxy_protocol.insecure is True


def test_grace_timeout_uses_traefik_spelling() -> None:
    entry_point = EntryPoint.model_validate(
        {"address": ":80", "transport": {"lifeCycle": {"graceTimeOut": "3s"}}}
    )
    assert entry_point.transport.life_cycle.grace_time_out == 3.0


def test_static_defaults_match_traefik() -> None:
    config = StaticConfig()
    assert config.entry_points == {}
    assert config.providers.providers_throttle_duration == 2.0
    assert config.providers.file is None
    assert (config.log.level, config.log.format, config.log.file_path) == ("ERROR", "common", "")
    assert config.access_log is None
    assert config.api is None
    assert config.ping is None
    assert config.metrics is None
    assert config.certificates_resolvers == {}
    assert config.tcp_servers_transport == TCPServersTransport()
    transport = config.tcp_servers_transport
    assert (transport.dial_timeout, transport.dial_keep_alive) == (30.0, 15.0)
    assert transport.termination_delay == 0.1


def test_present_api_block_enables_the_dashboard_by_default() -> None:
    config = StaticConfig.model_validate({"api": {}})
    assert config.api is not None
    assert (config.api.insecure, config.api.dashboard, config.api.debug) == (False, True, False)


def test_file_provider_watches_by_default() -> None:
    config = StaticConfig.model_validate({"providers": {"file": {"directory": "/etc/dyn"}}})
    assert config.providers.file is not None
    assert config.providers.file.watch is True


def _static(entry_points: dict[str, dict[str, object]]) -> StaticConfig:
    return StaticConfig.model_validate({"entryPoints": entry_points})


def test_default_entry_points_are_all_tcp_ones_but_traefik_sorted() -> None:
    config = _static(
        {
            "websecure": {"address": ":443"},
            "traefik": {"address": ":8080"},
            "dns": {"address": ":53/udp"},
            "web": {"address": ":80/tcp"},
        }
    )
    assert config.default_entry_points() == ["web", "websecure"]


def test_as_default_entry_points_replace_the_full_list() -> None:
    config = _static(
        {
            "web": {"address": ":80"},
            "ssh": {"address": ":22", "asDefault": True},
            "db": {"address": ":5432", "asDefault": True},
        }
    )
    assert config.default_entry_points() == ["db", "ssh"]


def test_as_default_on_udp_or_traefik_still_narrows_but_is_never_returned() -> None:
    # Traefik counts the flag before filtering UDP and `traefik` out (cmd/traefik/traefik.go).
    config = _static(
        {
            "web": {"address": ":80"},
            "dns": {"address": ":53/udp", "asDefault": True},
            "traefik": {"address": ":8080", "asDefault": True},
        }
    )
    assert config.default_entry_points() == []


def test_no_entry_points_means_no_default_entry_points() -> None:
    assert StaticConfig().default_entry_points() == []


def test_static_keys_match_case_insensitively() -> None:
    config = StaticConfig.model_validate(
        {"ENTRYPOINTS": {"web": {"Address": ":80", "asdefault": True}}}
    )
    assert config.entry_points["web"].as_default is True


@pytest.mark.parametrize("provider", UNIMPLEMENTED_PROVIDERS)
def test_providers_said_to_be_unimplemented_really_build_nothing(provider: str) -> None:
    from switchyard.providers.registry import build_providers

    key = next(alias for alias in Providers.known_keys() if alias.lower() == provider)
    config = StaticConfig.model_validate({"providers": {key: {"x": 1}}})
    assert build_providers(config) == []
