"""Loading configuration files: formats, per-element errors, warnings, directory merges."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from switchyard.config.dynamic import DynamicConfig, RouterTLS
from switchyard.config.loader import (
    ConfigIssue,
    ConfigLoadError,
    load_dynamic,
    load_dynamic_from_dict,
    load_static,
    static_from_dict,
)


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _errors(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return [issue for issue in issues if issue.severity == "error"]


def _warnings(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return [issue for issue in issues if issue.severity == "warning"]


YAML_DYNAMIC = """
tcp:
  routers:
    db:
      entryPoints: [postgres]
      rule: HostSNI(`db.example.com`)
      service: db
      priority: 10
      tls:
        passthrough: true
  services:
    db:
      loadBalancer:
        servers:
          - address: 10.0.0.1:5432
          - address: 10.0.0.2:5432
            tls: true
        serversTransport: slow
        healthCheck:
          interval: 10s
    both:
      weighted:
        services:
          - name: db
            weight: 3
  middlewares:
    limit:
      inFlightConn:
        amount: 10
    office:
      ipAllowList:
        sourceRange: [10.0.0.0/8]
  serversTransports:
    slow:
      dialTimeout: 1m
      proxyProtocol:
        version: 1
tls:
  certificates:
    - certFile: /certs/a.crt
      keyFile: /certs/a.key
      stores: [default]
  options:
    modern:
      minVersion: VersionTLS13
      sniStrict: true
"""

TOML_DYNAMIC = """
[tcp.routers.db]
entryPoints = ["postgres"]
rule = "HostSNI(`db.example.com`)"
service = "db"
priority = 10
[tcp.routers.db.tls]
passthrough = true

[tcp.services.db.loadBalancer]
serversTransport = "slow"
[[tcp.services.db.loadBalancer.servers]]
address = "10.0.0.1:5432"
[[tcp.services.db.loadBalancer.servers]]
address = "10.0.0.2:5432"
tls = true
[tcp.services.db.loadBalancer.healthCheck]
interval = "10s"

[[tcp.services.both.weighted.services]]
name = "db"
weight = 3

[tcp.middlewares.limit.inFlightConn]
amount = 10
[tcp.middlewares.office.ipAllowList]
sourceRange = ["10.0.0.0/8"]

[tcp.serversTransports.slow]
dialTimeout = "1m"
[tcp.serversTransports.slow.proxyProtocol]
version = 1

[[tls.certificates]]
certFile = "/certs/a.crt"
keyFile = "/certs/a.key"
stores = ["default"]

[tls.options.modern]
minVersion = "VersionTLS13"
sniStrict = true
"""


def test_yaml_and_toml_forms_of_one_config_load_equal(tmp_path: Path) -> None:
    from_yaml, yaml_issues = load_dynamic(str(_write(tmp_path, "dynamic.yml", YAML_DYNAMIC)))
    from_toml, toml_issues = load_dynamic(str(_write(tmp_path, "dynamic.toml", TOML_DYNAMIC)))
    assert (yaml_issues, toml_issues) == ([], [])
    assert from_yaml == from_toml
    assert from_yaml.tcp.routers["db"].tls == RouterTLS(passthrough=True)
    assert from_yaml.tcp.servers_transports["slow"].dial_timeout == 60.0
    assert from_yaml.tls.options["modern"].sni_strict is True


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "empty-mapping.yml",
            "tcp:\n  routers:\n    r:\n      rule: HostSNI(`*`)\n      tls: {}\n",
        ),
        ("table.toml", '[tcp.routers.r]\nrule = "HostSNI(`*`)"\n[tcp.routers.r.tls]\n'),
    ],
)
def test_empty_tls_block_in_any_form_makes_a_tls_router(
    tmp_path: Path, name: str, text: str
) -> None:
    config, issues = load_dynamic(str(_write(tmp_path, name, text)))
    assert issues == []
    assert config.tcp.routers["r"].tls == RouterTLS()


def test_bad_router_is_left_out_and_reported_while_its_neighbour_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "dynamic.yml",
        """
        tcp:
          routers:
            good:
              rule: HostSNI(`*`)
              service: svc
            web:
              rule: HostSNI(`*`)
              priority: high
        """,
    )
    config, issues = load_dynamic(str(path))
    assert list(config.tcp.routers) == ["good"]
    [error] = _errors(issues)
    assert error.path == "tcp.routers.web.priority"
    assert error.message == 'expected an integer, got "high"'
    assert (error.source, error.line) == (str(path), 8)
    expected = f'{path}:8: error: tcp.routers.web.priority: expected an integer, got "high"'
    assert str(error) == expected


def test_missing_required_key_is_reported_at_that_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "dynamic.yml",
        """
        tls:
          certificates:
            - certFile: a.crt
            - certFile: b.crt
              keyFile: b.key
        """,
    )
    config, issues = load_dynamic(str(path))
    assert [certificate.cert_file for certificate in config.tls.certificates] == ["b.crt"]
    [error] = issues
    assert error.path == "tls.certificates[0].keyFile"
    assert error.message == "required key is missing"
    assert error.line == 3  # the certificate's own line, the closest one that exists


def test_unknown_key_is_a_warning_with_a_suggestion_and_has_no_effect(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "dynamic.yml",
        """
        tcp:
          routers:
            web:
              entrypoint: [web]
              rule: HostSNI(`*`)
        """,
    )
    config, issues = load_dynamic(str(path))
    assert config.tcp.routers["web"].entry_points == []
    [warning] = issues
    assert warning.severity == "warning"
    assert warning.path == "tcp.routers.web.entrypoint"
    assert warning.message == 'unknown key "entrypoint" is ignored; did you mean "entryPoints"?'
    assert warning.line == 4


def test_unknown_keys_deep_inside_elements_and_sections_are_reported() -> None:
    _, issues = load_dynamic_from_dict(
        {
            "tcp": {
                "routerz": {},
                "services": {"s": {"loadBalancer": {"servers": [{"adress": "x:1"}]}}},
            },
            "tlss": {},
        },
        "test",
    )
    assert [(issue.severity, issue.path) for issue in issues] == [
        ("warning", "tcp.routerz"),
        ("warning", "tcp.services.s.loadBalancer.servers[0].adress"),
        ("warning", "tlss"),
    ]
    assert 'did you mean "routers"?' in issues[0].message
    assert 'did you mean "address"?' in issues[1].message


def test_unknown_key_far_from_any_known_key_gets_no_suggestion() -> None:
    _, [warning] = load_dynamic_from_dict({"tcp": {"routers": {"r": {"zzz": 1}}}}, "test")
    assert warning.message == 'unknown key "zzz" is ignored'


def test_section_keys_match_case_insensitively() -> None:
    config, issues = load_dynamic_from_dict(
        {"TCP": {"Routers": {"r": {"Rule": "HostSNI(`*`)"}}, "serverstransports": {"t": {}}}},
        "test",
    )
    assert issues == []
    assert config.tcp.routers["r"].rule == "HostSNI(`*`)"
    assert "t" in config.tcp.servers_transports


def test_section_that_is_not_a_mapping_is_an_error_and_the_rest_loads() -> None:
    config, issues = load_dynamic_from_dict(
        {"tcp": {"routers": ["web"], "services": {"s": {}}}, "tls": "yes"}, "test"
    )
    assert config.tcp.routers == {}
    assert "s" in config.tcp.services
    assert [(issue.path, issue.message) for issue in issues] == [
        ("tcp.routers", "expected a mapping, got a list"),
        ("tls", 'expected a mapping, got "yes"'),
    ]


def test_element_that_is_not_a_mapping_is_an_error() -> None:
    config, [issue] = load_dynamic_from_dict({"tcp": {"routers": {"web": "HostSNI"}}}, "test")
    assert config.tcp.routers == {}
    assert (issue.severity, issue.path) == ("error", "tcp.routers.web")
    assert issue.message == 'expected a mapping, got "HostSNI"'


def test_null_element_is_ignored_with_a_warning_as_traefik_drops_it() -> None:
    config, [issue] = load_dynamic_from_dict({"tcp": {"middlewares": {"m": None}}}, "test")
    assert config.tcp.middlewares == {}
    assert (issue.severity, issue.path) == ("warning", "tcp.middlewares.m")


def test_every_kind_of_element_is_validated_on_its_own() -> None:
    config, issues = load_dynamic_from_dict(
        {
            "tcp": {
                "services": {"ok": {}, "bad": {"loadBalancer": {"servers": "x"}}},
                "middlewares": {"ok": {}, "bad": {"inFlightConn": {"amount": "many"}}},
                "serversTransports": {"ok": {}, "bad": {"dialTimeout": "soon"}},
            },
            "tls": {
                "options": {"ok": {}, "bad": {"sniStrict": "maybe"}},
                "stores": {"ok": {}, "bad": {"defaultCertificate": {"certFile": "c"}}},
            },
        },
        "test",
    )
    for collection in (
        config.tcp.services,
        config.tcp.middlewares,
        config.tcp.servers_transports,
        config.tls.options,
        config.tls.stores,
    ):
        assert list(collection) == ["ok"]
    assert [issue.path for issue in issues] == [
        "tcp.services.bad.loadBalancer.servers",
        "tcp.middlewares.bad.inFlightConn.amount",
        "tcp.serversTransports.bad.dialTimeout",
        "tls.options.bad.sniStrict",
        "tls.stores.bad.defaultCertificate.keyFile",
    ]
    assert issues[2].message.startswith('invalid duration "soon"')
    assert issues[3].message == 'expected true or false, got "maybe"'


def test_http_and_udp_sections_are_kept_raw() -> None:
    raw_http = {"routers": {"web": {"rule": "Host(`a`)", "anything": 1}}}
    config, issues = load_dynamic_from_dict({"http": raw_http, "udp": {"services": {}}}, "test")
    assert issues == []
    assert config.http == raw_http
    assert config.udp == {"services": {}}


@pytest.mark.parametrize(
    ("name", "text"), [("empty.yml", ""), ("comments.yml", "# nothing\n"), ("empty.toml", "")]
)
def test_empty_file_is_an_empty_config(tmp_path: Path, name: str, text: str) -> None:
    assert load_dynamic(str(_write(tmp_path, name, text))) == (DynamicConfig(), [])


def test_duplicate_yaml_key_is_a_warning_and_the_last_value_wins(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "dynamic.yml",
        """
        tcp:
          routers:
            r:
              rule: HostSNI(`a`)
              rule: HostSNI(`b`)
        """,
    )
    config, [warning] = load_dynamic(str(path))
    assert config.tcp.routers["r"].rule == "HostSNI(`b`)"
    assert (warning.severity, warning.path, warning.line) == ("warning", "tcp.routers.r.rule", 5)
    assert "lines 4 and 5" in warning.message


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "dynamic.yml",
        """
        x-common: &common
          entryPoints: [web]
          service: svc
        tcp:
          routers:
            a:
              <<: *common
              rule: HostSNI(`a`)
            b:
              <<: *common
              rule: HostSNI(`b`)
              service: other
        """,
    )
    config, issues = load_dynamic(str(path))
    assert [issue.path for issue in issues] == ["x-common"]  # unknown top-level key
    assert config.tcp.routers["a"].entry_points == ["web"]
    assert config.tcp.routers["b"].service == "other"


def test_invalid_yaml_raises_naming_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yml", "tcp:\n  routers:\n    web: [unclosed\n")
    with pytest.raises(ConfigLoadError, match=rf"^{path}:\d+:\d+: invalid YAML"):
        load_dynamic(str(path))


def test_invalid_toml_raises_naming_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.toml", "[tcp.routers.web\nrule = 1\n")
    with pytest.raises(ConfigLoadError, match=rf"^{path}: invalid TOML: .*line 1"):
        load_dynamic(str(path))


def test_top_level_that_is_not_a_mapping_raises(tmp_path: Path) -> None:
    path = _write(tmp_path, "list.yml", "- tcp\n- tls\n")
    with pytest.raises(ConfigLoadError, match=rf"^{path}: the top level must be a mapping"):
        load_dynamic(str(path))


def test_missing_file_raises_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigLoadError, match=rf"^{missing}: cannot read"):
        load_dynamic(str(missing))


def test_unknown_extension_is_read_as_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "dynamic.conf", "tcp:\n  routers:\n    r:\n      rule: HostSNI(`*`)\n")
    config, _ = load_dynamic(str(path))
    assert "r" in config.tcp.routers


def test_load_dynamic_needs_a_file_or_a_directory() -> None:
    with pytest.raises(ConfigLoadError, match="neither filename nor directory"):
        load_dynamic()


def test_directory_merges_files_and_the_first_definition_wins(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", "tcp:\n  routers:\n    web:\n      rule: HostSNI(`a`)\n")
    second = _write(
        tmp_path,
        "b.toml",
        '[tcp.routers.web]\nrule = "HostSNI(`b`)"\n[tcp.routers.ssh]\nrule = "HostSNI(`*`)"\n',
    )
    _write(tmp_path, "sub/c.yaml", "tls:\n  certificates:\n    - {certFile: c, keyFile: k}\n")
    _write(tmp_path, ".hidden.yml", "tcp:\n  routers:\n    hidden:\n      rule: x\n")
    _write(tmp_path, "..data/d.yml", "tcp:\n  routers:\n    linked:\n      rule: x\n")
    _write(tmp_path, "notes.txt", "not: [config")
    config, issues = load_dynamic(directory=str(tmp_path))
    assert sorted(config.tcp.routers) == ["ssh", "web"]
    assert config.tcp.routers["web"].rule == "HostSNI(`a`)"
    assert [certificate.cert_file for certificate in config.tls.certificates] == ["c"]
    [duplicate] = issues
    assert (duplicate.severity, duplicate.path, duplicate.source) == (
        "error",
        "tcp.routers.web",
        str(second),
    )
    assert str(tmp_path / "a.yml") in duplicate.message
    assert str(second) in duplicate.message


def test_directory_merge_concatenates_certificates_and_merges_raw_http(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "1.yml",
        "http:\n  routers:\n    a: {rule: x}\ntls:\n  certificates:\n"
        "    - {certFile: one, keyFile: k}\n",
    )
    _write(
        tmp_path,
        "2.yml",
        "http:\n  routers:\n    a: {rule: y}\n    b: {rule: z}\n"
        "tls:\n  certificates:\n    - {certFile: two, keyFile: k}\n",
    )
    config, issues = load_dynamic(directory=str(tmp_path))
    assert [certificate.cert_file for certificate in config.tls.certificates] == ["one", "two"]
    assert config.http == {"routers": {"a": {"rule": "x"}, "b": {"rule": "z"}}}
    assert [(issue.severity, issue.path) for issue in issues] == [("error", "http.routers.a")]


def test_directory_with_an_unparsable_file_raises(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", "tcp: {}\n")
    broken = _write(tmp_path, "b.yml", "tcp: [\n")
    with pytest.raises(ConfigLoadError, match=str(broken)):
        load_dynamic(directory=str(tmp_path))


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigLoadError, match="cannot read directory"):
        load_dynamic(directory=str(tmp_path / "nope"))


def test_directory_wins_over_filename_with_a_warning(tmp_path: Path) -> None:
    _write(tmp_path / "dir", "a.yml", "tcp:\n  routers:\n    fromdir:\n      rule: x\n")
    single = _write(tmp_path, "single.yml", "tcp:\n  routers:\n    fromfile:\n      rule: x\n")
    config, [warning] = load_dynamic(filename=str(single), directory=str(tmp_path / "dir"))
    assert list(config.tcp.routers) == ["fromdir"]
    assert warning.severity == "warning"
    assert str(single) in warning.message


REAL_WORLD_STATIC = """
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: INFO
accessLog:
  filePath: /var/log/traefik/access.log
  bufferingSize: 100
api:
  dashboard: true
  insecure: false
ping: {}
metrics:
  prometheus:
    addEntryPointsLabels: true
    buckets: [0.1, 0.3, 1.2, 5.0]
entryPoints:
  web:
    address: ":80"
    http:
      redirections:
        entryPoint:
          to: websecure
          scheme: https
  websecure:
    address: ":443"
    asDefault: true
    http:
      tls:
        certResolver: le
        domains:
          - main: example.com
            sans: ["*.example.com"]
    http3: {}
    forwardedHeaders:
      trustedIPs: ["10.0.0.0/8"]
    transport:
      respondingTimeouts:
        readTimeout: 30s
      lifeCycle:
        graceTimeOut: 20s
  postgres:
    address: ":5432"
    proxyProtocol:
      trustedIPs: ["10.0.0.0/8", "127.0.0.1"]
  dns:
    address: ":53/udp"
    udp:
      timeout: 10s
providers:
  providersThrottleDuration: 5s
  docker:
    endpoint: unix:///var/run/docker.sock
    exposedByDefault: false
  file:
    directory: /etc/traefik/dynamic
    watch: true
certificatesResolvers:
  le:
    acme:
      email: admin@example.com
      storage: /letsencrypt/acme.json
      httpChallenge:
        entryPoint: web
serversTransport:
  insecureSkipVerify: true
tcpServersTransport:
  dialTimeout: 10s
experimental:
  plugins:
    demo:
      moduleName: github.com/traefik/plugindemo
      version: v0.2.1
"""


def test_real_world_traefik_yml_with_http_only_keys_loads_cleanly(tmp_path: Path) -> None:
    config, issues = load_static(str(_write(tmp_path, "traefik.yml", REAL_WORLD_STATIC)))
    # No unknown keys; only what Switchyard accepts and does not implement is said.
    assert [(i.path, i.severity) for i in issues] == [
        ("experimental", "warning"), ("entryPoints.websecure.http3", "warning")]
    assert all("not implemented by Switchyard" in i.message for i in issues)
    assert config.default_entry_points() == ["websecure"]
    websecure = config.entry_points["websecure"]
    assert websecure.transport.responding_timeouts.read_timeout == 30.0
    assert websecure.transport.life_cycle.grace_time_out == 20.0
    postgres = config.entry_points["postgres"].proxy_protocol
    assert postgres is not None
    assert postgres.trusted_ips == ["10.0.0.0/8", "127.0.0.1"]
    assert config.entry_points["dns"].protocol == "udp"
    assert config.providers.providers_throttle_duration == 5.0
    assert config.providers.file is not None
    assert config.providers.file.directory == "/etc/traefik/dynamic"
    assert config.providers.docker == {
        "endpoint": "unix:///var/run/docker.sock",
        "exposedByDefault": False,
    }
    assert config.certificates_resolvers["le"]["acme"]["storage"] == "/letsencrypt/acme.json"
    assert config.tcp_servers_transport.dial_timeout == 10.0
    assert config.log.level == "INFO"
    assert config.access_log is not None
    assert config.access_log.buffering_size == 100
    assert config.ping is not None
    assert config.api is not None
    assert config.metrics is not None
    assert config.metrics.prometheus is not None


def test_static_toml_loads_like_yaml(tmp_path: Path) -> None:
    toml_text = """
    [entryPoints.web]
    address = ":80"
    [entryPoints.web.transport.respondingTimeouts]
    readTimeout = 5
    [providers.file]
    filename = "dynamic.toml"
    """
    yaml_text = """
    entryPoints:
      web:
        address: ":80"
        transport:
          respondingTimeouts:
            readTimeout: 5
    providers:
      file:
        filename: dynamic.toml
    """
    from_toml, _ = load_static(str(_write(tmp_path, "traefik.toml", toml_text)))
    from_yaml, _ = load_static(str(_write(tmp_path, "traefik.yml", yaml_text)))
    assert from_toml == from_yaml
    assert from_toml.entry_points["web"].transport.responding_timeouts.read_timeout == 5.0


def test_static_errors_are_fatal_and_list_every_key_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "traefik.yml",
        """
        entryPoints:
          web:
            address: "8080"
          ssh:
            address: ":22"
            reusePort: sometimes
        """,
    )
    with pytest.raises(ConfigLoadError) as caught:
        load_static(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid static configuration:")
    assert f'{path}:3: error: entryPoints.web.address: entry point address "8080"' in message
    assert f"{path}:6: error: entryPoints.ssh.reusePort: expected true or false" in message
    assert [issue.path for issue in caught.value.issues] == [
        "entryPoints.web.address",
        "entryPoints.ssh.reusePort",
    ]


def test_static_unknown_key_is_a_warning(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "traefik.yml", "entryPoints:\n  web:\n    adress: ':80'\n    address: ':81'\n"
    )
    config, [warning] = load_static(str(path))
    assert config.entry_points["web"].address == ":81"
    assert (warning.severity, warning.path, warning.line) == (
        "warning",
        "entryPoints.web.adress",
        3,
    )
    assert 'did you mean "address"?' in warning.message


def test_static_from_dict_validates_like_a_file() -> None:
    config, issues = static_from_dict({"entryPoints": {"web": {"address": ":80"}}}, "flags")
    assert (config.default_entry_points(), issues) == (["web"], [])
    with pytest.raises(ConfigLoadError, match=r"^flags: invalid static configuration"):
        static_from_dict({"entryPoints": {"web": {"address": "80"}}}, "flags")


def test_unparsable_static_file_raises(tmp_path: Path) -> None:
    path = _write(tmp_path, "traefik.yml", "entryPoints:\n  web:\n    address: ':80\n")
    with pytest.raises(ConfigLoadError, match=str(path)):
        load_static(str(path))


# --- static and dynamic sections in one file, flags over a file ----------------------------

COMBINED = """
log:
  level: DEBUG
entryPoints:
  tcp:
    address: ":8093"
api:
  insecure: true
providers:
  file:
    filename: "{self}"
tcp:
  routers:
    to-a:
      rule: "HostSNI(`*`)"
      service: a
  services:
    a:
      loadBalancer:
        servers: [{{address: "127.0.0.1:8081"}}]
"""


def test_a_file_holding_static_and_dynamic_sections_loads_without_unknown_keys(
        tmp_path: Path) -> None:
    path = tmp_path / "traefik.yml"
    path.write_text(COMBINED.format(self=path))

    static, static_issues = load_static(str(path))
    dynamic, dynamic_issues = load_dynamic(filename=str(path))

    assert (static_issues, dynamic_issues) == ([], [])
    assert list(static.entry_points) == ["tcp"]
    assert list(dynamic.tcp.routers) == ["to-a"]


def test_a_combined_file_named_by_a_flag_loads_without_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "fixture.toml"
    path.write_text('[entryPoints.tcp]\naddress = ":8093"\n[providers.file]\nwatch = true\n'
                    '[tcp.routers.r]\nrule = "HostSNI(`*`)"\nservice = "s"\n')

    _, static_issues = load_static(str(path), {"providers": {"file": {"filename": str(path)}}})
    _, dynamic_issues = load_dynamic(filename=str(path))

    assert (static_issues, dynamic_issues) == ([], [])


def test_dynamic_sections_the_file_provider_does_not_read_are_said_to_be_ignored(
        tmp_path: Path) -> None:
    path = _write(tmp_path, "traefik.yml", """
        entryPoints:
          tcp: {address: ":9000"}
        providers:
          file: {filename: other.yml}
        tcp:
          routers: {}
        """)
    _, [issue] = load_static(str(path))
    assert (issue.path, issue.severity, issue.line) == ("tcp", "warning", 5)
    assert "providers.file does not read" in issue.message
    assert f"set providers.file.filename to {path}" in issue.message


def test_a_dynamic_file_given_as_the_static_one_is_refused_with_the_way_to_check_it(
        tmp_path: Path) -> None:
    path = _write(tmp_path, "dynamic.yml", "tcp:\n  routers: {}\ntls:\n  options: {}\n")
    with pytest.raises(ConfigLoadError) as caught:
        load_static(str(path))
    assert "this looks like a dynamic configuration (tcp, tls)" in str(caught.value)
    assert f'"switchyard check {path}"' in str(caught.value)


def test_static_keys_in_a_dynamic_file_are_said_to_belong_to_the_static_file(
        tmp_path: Path) -> None:
    path = _write(tmp_path, "dynamic.yml", "entryPoints:\n  web: {address: ':80'}\ntcp: {}\n")
    _, [issue] = load_dynamic(filename=str(path))
    assert (issue.path, issue.severity, issue.line) == ("entryPoints", "warning", 1)
    assert issue.message.startswith("entryPoints is static configuration and is ignored in a "
                                    "dynamic file: move it to the static file")


def test_flags_override_the_file_and_each_problem_names_where_it_came_from(
        tmp_path: Path) -> None:
    path = _write(tmp_path, "traefik.yml", "entryPoints:\n  web:\n    address: ':80'\n"
                                           "    bogus: 1\n")
    config, issues = load_static(str(path), {"entryPoints": {
        "web": {"address": ":81"}, "ssh": {"address": ":22", "adress": ":23"}}})
    assert config.entry_points["web"].address == ":81"
    assert [(i.source, i.path, i.line) for i in issues] == [
        (str(path), "entryPoints.web.bogus", 4), ("flags", "entryPoints.ssh.adress", None)]
    with pytest.raises(ConfigLoadError) as caught:
        load_static(str(path), {"entryPoints": {"ssh": {"reusePort": "true"}}})
    assert [(i.source, i.path) for i in caught.value.issues] == [
        ("flags", "entryPoints.ssh.address")]


def test_static_keys_switchyard_does_not_implement_are_said(tmp_path: Path) -> None:
    path = _write(tmp_path, "traefik.yml", """
        entryPoints:
          web:
            address: ":80"
            http2: {maxConcurrentStreams: 10}
        tracing: {}
        hostResolver: {cnameFlattening: true}
        experimental: {}
        core: {defaultRuleSyntax: v2}
        providers:
          nomad: {endpoint: {address: "http://127.0.0.1:4646"}}
        """)
    _, issues = load_static(str(path))
    assert [(i.path, i.line) for i in issues] == [
        ("tracing", 5), ("hostResolver", 6), ("core.defaultRuleSyntax", 8),
        ("entryPoints.web.http2", 4), ("providers.nomad", 10)]
    assert all(i.severity == "warning" and "not implemented by Switchyard" in i.message
               for i in issues)
    assert "set ruleSyntax: v2 on each router" in issues[2].message


def test_default_rule_syntax_v3_and_an_empty_experimental_section_change_nothing() -> None:
    _, issues = static_from_dict({"core": {"defaultRuleSyntax": "v3"}, "experimental": {}},
                                 "flags")
    assert issues == []


def test_a_file_provider_without_filename_or_directory_is_said_to_read_nothing() -> None:
    _, [issue] = static_from_dict({"providers": {"file": {"watch": True}}}, "flags")
    assert (issue.path, issue.severity) == ("providers.file", "warning")
    assert "no dynamic configuration is read; set providers.file.filename" in issue.message


def test_a_control_character_is_an_invalid_yaml_error_at_its_position(tmp_path: Path) -> None:
    path = tmp_path / "dynamic.yml"
    path.write_text("tcp:\n  routers: {}\n  \x18\n")
    with pytest.raises(ConfigLoadError) as caught:
        load_dynamic(filename=str(path))
    assert str(caught.value) == (
        f"{path}:3:3: invalid YAML: character U+0018 is not allowed in YAML; remove it (or "
        "write it as an escape inside double quotes)")
