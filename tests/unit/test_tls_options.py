"""TLS options: mapping to Python's ssl, their errors, and which options a router gets."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from typing import Any

import pytest
import trustme

from switchyard.config.dynamic import TLSOptions, TLSSection
from switchyard.tls.certificates import CertificateStore, build_certificate_store
from switchyard.tls.options import (
    TRAEFIK_DEFAULT_CIPHER_SUITES,
    TLSOptionsError,
    build_server_context,
    compile_server_options,
    refuses_alpn,
    resolve_host_options,
    resolve_router_options,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def store() -> CertificateStore:
    return build_certificate_store(TLSSection())[0]


def options(**raw: Any) -> TLSOptions:
    return TLSOptions.model_validate(raw)


def tls12_ciphers(context: ssl.SSLContext) -> list[str]:
    return [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]


# --- versions --------------------------------------------------------------------------------


def test_default_versions_are_tls12_and_up() -> None:
    settings = compile_server_options(TLSOptions())

    assert settings.minimum_version is ssl.TLSVersion.TLSv1_2
    assert settings.maximum_version is ssl.TLSVersion.MAXIMUM_SUPPORTED


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("VersionTLS10", ssl.TLSVersion.TLSv1),
        ("VersionTLS11", ssl.TLSVersion.TLSv1_1),
        ("VersionTLS12", ssl.TLSVersion.TLSv1_2),
        ("VersionTLS13", ssl.TLSVersion.TLSv1_3),
    ],
)
def test_version_names_map_to_python_versions(
    name: str, version: ssl.TLSVersion, store: CertificateStore
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Python's TLS 1.0/1.1 deprecation must not leak
        context = build_server_context(options(minVersion=name, maxVersion=name), store)

    assert context.minimum_version is version
    assert context.maximum_version is version


def test_tls10_and_tls11_lower_openssls_security_level_as_go_allows_them() -> None:
    legacy = compile_server_options(options(minVersion="VersionTLS11")).ciphers
    modern = compile_server_options(TLSOptions()).ciphers

    assert legacy is not None and legacy.endswith(":@SECLEVEL=0")
    assert modern is not None and "@SECLEVEL" not in modern


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"minVersion": "VersionTLS14"}, 'minVersion "VersionTLS14" is not a TLS version: use one'),
        ({"maxVersion": "TLS1.2"}, 'maxVersion "TLS1.2" is not a TLS version'),
        (
            {"minVersion": "VersionTLS13", "maxVersion": "VersionTLS12"},
            "maxVersion VersionTLS12 is below minVersion VersionTLS13",
        ),
    ],
)
def test_bad_versions_are_refused_naming_the_option(raw: dict[str, str], message: str) -> None:
    with pytest.raises(TLSOptionsError, match=message):
        compile_server_options(options(**raw))


# --- cipher suites ---------------------------------------------------------------------------


def test_go_cipher_names_map_to_openssl_in_gos_preference_order(store: CertificateStore) -> None:
    raw = ["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]

    context = build_server_context(options(cipherSuites=raw), store)

    assert tls12_ciphers(context) == ["ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA"]
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_tls13_suites_are_accepted_and_leave_tls13_alone(store: CertificateStore) -> None:
    raw = ["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]

    context = build_server_context(options(cipherSuites=raw), store)

    assert tls12_ciphers(context) == ["ECDHE-RSA-AES128-GCM-SHA256"]
    assert {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.3"} == {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }


def test_only_tls13_suites_leave_only_tls13_handshakes_possible() -> None:
    settings = compile_server_options(options(cipherSuites=["TLS_AES_256_GCM_SHA384"]))

    assert settings.ciphers is None
    assert settings.minimum_version is ssl.TLSVersion.TLSv1_3
    with pytest.raises(TLSOptionsError, match="maxVersion VersionTLS12 rules out TLS 1.3"):
        compile_server_options(
            options(cipherSuites=["TLS_AES_256_GCM_SHA384"], maxVersion="VersionTLS12")
        )


def test_go_aliases_of_one_suite_yield_it_once() -> None:
    settings = compile_server_options(
        options(
            cipherSuites=[
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        )
    )

    assert settings.ciphers == "ECDHE-RSA-CHACHA20-POLY1305"


def test_without_cipher_suites_traefiks_default_list_applies() -> None:
    default = compile_server_options(TLSOptions()).ciphers
    explicit = compile_server_options(options(cipherSuites=list(TRAEFIK_DEFAULT_CIPHER_SUITES)))

    assert default == explicit.ciphers
    assert default is not None and default.startswith("ECDHE-ECDSA-AES128-GCM-SHA256:")
    assert "AES128-SHA" in default.split(":") and "DES-CBC3-SHA" not in default


def test_unknown_cipher_suite_is_refused_naming_it() -> None:
    with pytest.raises(TLSOptionsError, match='cipherSuites: unknown cipher suite "AES128-SHA"'):
        compile_server_options(options(cipherSuites=["AES128-SHA"]))


def test_suite_missing_from_the_local_openssl_is_left_out_with_a_note() -> None:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.set_ciphers("RC4-SHA:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    else:
        pytest.skip("this OpenSSL still has RC4")

    settings = compile_server_options(
        options(cipherSuites=["TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"])
    )

    assert settings.ciphers == "AES128-SHA"
    assert settings.notes == (
        "cipherSuites: TLS_RSA_WITH_RC4_128_SHA is not available in the local OpenSSL; left out",
    )


# --- curves ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("CurveP256", "prime256v1"),
        ("secp256r1", "prime256v1"),
        ("CurveP384", "secp384r1"),
        ("secp384r1", "secp384r1"),
        ("CurveP521", "secp521r1"),
        ("secp521r1", "secp521r1"),
        ("X25519", "X25519"),
        ("x25519", "X25519"),
    ],
)
def test_curve_names_map_to_openssl_groups(name: str, group: str, store: CertificateStore) -> None:
    settings = compile_server_options(options(curvePreferences=[name]))

    assert settings.ecdh_curve == group
    assert settings.notes == ()
    build_server_context(options(curvePreferences=[name]), store)  # OpenSSL accepts the group


def test_only_the_first_curve_can_be_offered_and_a_note_says_so() -> None:
    settings = compile_server_options(options(curvePreferences=["CurveP384", "X25519"]))

    assert settings.ecdh_curve == "secp384r1"
    assert settings.notes == (
        (
            "curvePreferences: Python's ssl can offer a single curve; only CurveP384 is "
            "offered, not X25519"
        ),
    )


def test_hybrid_post_quantum_groups_are_known_but_cannot_be_selected() -> None:
    settings = compile_server_options(options(curvePreferences=["X25519MLKEM768", "CurveP256"]))

    assert settings.ecdh_curve == "prime256v1"
    assert settings.notes == (
        "curvePreferences: X25519MLKEM768 cannot be selected through Python's ssl; ignored",
    )


def test_unknown_curve_is_refused_naming_it() -> None:
    with pytest.raises(TLSOptionsError, match='curvePreferences: unknown curve "P-256"'):
        compile_server_options(options(curvePreferences=["P-256"]))


# --- ALPN, tickets, cipher preference --------------------------------------------------------


def test_alpn_defaults_to_traefiks_list_and_can_be_replaced_or_emptied() -> None:
    assert compile_server_options(TLSOptions()).alpn_protocols == ("h2", "http/1.1", "acme-tls/1")
    assert compile_server_options(options(alpnProtocols=["x"])).alpn_protocols == ("x",)
    assert compile_server_options(options(alpnProtocols=[])).alpn_protocols == ()


def test_alpn_protocol_of_invalid_length_is_refused() -> None:
    with pytest.raises(TLSOptionsError, match='alpnProtocols: "" must be 1 to 255 bytes long'):
        compile_server_options(options(alpnProtocols=["h2", ""]))


def test_disabling_session_tickets_stops_tls12_and_tls13_tickets(store: CertificateStore) -> None:
    default = build_server_context(TLSOptions(), store)
    disabled = build_server_context(options(disableSessionTickets=True), store)

    assert not default.options & ssl.OP_NO_TICKET and default.num_tickets > 0
    assert disabled.options & ssl.OP_NO_TICKET and disabled.num_tickets == 0
    assert compile_server_options(options(disableSessionTickets=True)).notes == (
        "disableSessionTickets: OpenSSL can still resume TLS 1.2 sessions by session ID",
    )


def test_prefer_server_cipher_suites_is_ineffective_as_in_traefik_v3(
    store: CertificateStore,
) -> None:
    for value in (True, False):
        context = build_server_context(options(preferServerCipherSuites=value), store)
        assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert (
        compile_server_options(options(preferServerCipherSuites=False))
        .notes[0]
        .startswith("preferServerCipherSuites is deprecated and has no effect")
    )
    assert compile_server_options(TLSOptions()).notes == ()


def test_sni_strict_is_carried_to_the_handshake() -> None:
    assert compile_server_options(options(sniStrict=True)).sni_strict
    assert not compile_server_options(TLSOptions()).sni_strict


# --- client authentication -------------------------------------------------------------------


def ca_pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


@pytest.mark.parametrize(
    ("kind", "mode"),
    [
        ("NoClientCert", ssl.CERT_NONE),
        ("RequestClientCert", ssl.CERT_NONE),
        ("RequireAnyClientCert", ssl.CERT_REQUIRED),
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ],
)
def test_client_auth_types_map_to_verify_modes(
    kind: str, mode: ssl.VerifyMode, ca: trustme.CA, store: CertificateStore
) -> None:
    raw = options(clientAuth={"caFiles": [ca_pem(ca)], "clientAuthType": kind})

    context = build_server_context(raw, store)

    assert context.verify_mode is mode
    assert len(context.get_ca_certs()) == 1


def test_approximated_client_auth_types_carry_a_note(ca: trustme.CA) -> None:
    request = compile_server_options(options(clientAuth={"clientAuthType": "RequestClientCert"}))
    require_any = compile_server_options(
        options(clientAuth={"caFiles": [ca_pem(ca)], "clientAuthType": "RequireAnyClientCert"})
    )

    assert "does not ask for a certificate" in request.notes[0]
    assert "also requires the certificate to chain to caFiles" in require_any.notes[0]


def test_ca_files_alone_mean_require_and_verify_as_in_traefik(ca: trustme.CA) -> None:
    implicit = compile_server_options(options(clientAuth={"caFiles": [ca_pem(ca)]}))
    explicit = compile_server_options(
        options(clientAuth={"caFiles": [ca_pem(ca)], "clientAuthType": "NoClientCert"})
    )

    assert implicit.verify_mode is ssl.CERT_REQUIRED
    assert explicit.verify_mode is ssl.CERT_NONE


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("VerifyClientCertIfGiven", "VerifyClientCertIfGiven needs caFiles"),
        ("RequireAndVerifyClientCert", "RequireAndVerifyClientCert needs caFiles"),
        ("RequireAnyClientCert", "cannot accept a client certificate without verifying it"),
        ("requireandverifyclientcert", 'unknown type "requireandverifyclientcert"'),
    ],
)
def test_client_auth_types_that_cannot_work_are_refused(kind: str, message: str) -> None:
    with pytest.raises(TLSOptionsError, match=f"clientAuth.clientAuthType: .*{message}"):
        compile_server_options(options(clientAuth={"clientAuthType": kind}))


def test_ca_files_load_from_paths_and_inline_pem_alike(ca: trustme.CA, tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))

    from_path = compile_server_options(options(clientAuth={"caFiles": [str(path)]}))
    from_content = compile_server_options(options(clientAuth={"caFiles": [ca_pem(ca)]}))

    assert from_path.client_ca_pem == from_content.client_ca_pem != ""


def test_unreadable_or_invalid_ca_files_are_refused_naming_them(
    ca: trustme.CA, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(
        TLSOptionsError,
        match=f'^cannot read clientAuth.caFiles\\[0\\] "{missing}": No such file or directory$',
    ):
        compile_server_options(options(clientAuth={"caFiles": [missing]}))
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(
        TLSOptionsError, match=r'clientAuth.caFiles\[1\] ".*bad.pem" holds no valid PEM certificate'
    ):
        compile_server_options(
            options(clientAuth={"caFiles": [ca_pem(ca), str(tmp_path / "bad.pem")]})
        )


# --- which options a router gets -------------------------------------------------------------


def test_router_without_options_gets_default() -> None:
    assert resolve_router_options("", "file", {"default"}) == "default"


def test_router_options_are_qualified_with_the_provider_unless_given_one_or_default() -> None:
    known = {"default", "strict@file", "strict@docker"}

    assert resolve_router_options("strict", "file", known) == "strict@file"
    assert resolve_router_options("strict@docker", "file", known) == "strict@docker"
    assert resolve_router_options("default", "docker", known) == "default"


def test_unknown_router_options_are_an_error_naming_the_qualified_name() -> None:
    with pytest.raises(TLSOptionsError, match="^unknown TLS options: strict@file$"):
        resolve_router_options("strict", "file", {"default", "strict@docker"})
    with pytest.raises(TLSOptionsError, match="^unknown TLS options: default$"):
        resolve_router_options("", "file", set())


def test_host_reached_with_one_option_name_keeps_it() -> None:
    resolved, conflicts = resolve_host_options({"a.example.com": {"strict@file"}})

    assert resolved == {"a.example.com": "strict@file"}
    assert conflicts == {}


def test_host_reached_with_different_options_falls_back_to_default_with_an_error() -> None:
    resolved, conflicts = resolve_host_options(
        {"a.example.com": {"strict@file", "default"}, "b.example.com": {"default"}}
    )

    assert resolved == {"a.example.com": "default", "b.example.com": "default"}
    assert conflicts == {
        "a.example.com": "found different TLS options for routers on the same host "
        "a.example.com, so using the default TLS options instead"
    }


def test_host_names_differing_in_case_are_one_host() -> None:
    resolved, conflicts = resolve_host_options(
        {"A.example.com": ["strict@file"], "a.example.com": ["modern@file"]}
    )

    assert resolved == {"a.example.com": "default"}
    assert list(conflicts) == ["a.example.com"]


# --- ALPN refusal, which Go does and OpenSSL does not ----------------------------------------


@pytest.mark.parametrize(
    ("server", "client", "refused"),
    [
        (["h2", "http/1.1"], ["http/1.1"], False),
        (["h2"], ["http/1.1"], False),  # Go's HTTP/1.1 fallback
        (["h2", "http/1.1"], ["imap"], True),
        (["acme-tls/1"], ["http/1.1"], True),
        ([], ["imap"], False),
        (["h2"], [], False),
    ],
)
def test_go_refuses_handshakes_without_a_common_alpn_protocol(
    server: list[str], client: list[str], refused: bool
) -> None:
    assert refuses_alpn(server, client) is refused
