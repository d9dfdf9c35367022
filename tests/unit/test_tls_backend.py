"""Backend TLS contexts: names sent and verified, verification switches, caching, SAN checks."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from switchyard.config.dynamic import PeerCertSAN, TransportTLS
from switchyard.tls.backend import (
    BackendTLSError,
    build_backend_context,
    peer_cert_sans,
    verify_peer_sans,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def transport(**raw: Any) -> TransportTLS:
    return TransportTLS.model_validate(raw)


def san_certificate(alt_names: list[x509.GeneralName] | None) -> bytes:
    """DER of a certificate with exactly these SANs (trustme cannot make URI SANs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backend")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if alt_names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def sans(*pairs: tuple[str, str]) -> list[PeerCertSAN]:
    return [PeerCertSAN(type=kind, value=value) for kind, value in pairs]


# --- names -----------------------------------------------------------------------------------


def test_server_name_is_sent_and_verified_when_configured() -> None:
    context, server_hostname = build_backend_context(
        transport(serverName="api.internal"), "10.0.0.5"
    )

    assert server_hostname == "api.internal"
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED


def test_without_server_name_the_servers_own_host_is_verified() -> None:
    for tls in (None, transport()):
        context, server_hostname = build_backend_context(tls, "db.internal")
        assert server_hostname == "db.internal"
        assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED


def test_ipv6_host_loses_its_brackets() -> None:
    assert build_backend_context(None, "[::1]")[1] == "::1"
    assert build_backend_context(None, "::1")[1] == "::1"
    assert build_backend_context(None, "")[1] is None


# --- verification switches -------------------------------------------------------------------


def test_insecure_skip_verify_turns_verification_off() -> None:
    context, _ = build_backend_context(transport(insecureSkipVerify=True), "db.internal")

    assert not context.check_hostname
    assert context.verify_mode is ssl.CERT_NONE


def test_peer_sans_keep_chain_verification_even_when_insecure() -> None:
    context, _ = build_backend_context(
        transport(insecureSkipVerify=True, peerCertSANs=[{"type": "URI", "value": "spiffe://x"}]),
        "10.0.0.5",
    )

    assert context.verify_mode is ssl.CERT_REQUIRED
    assert not context.check_hostname


def test_peer_sans_replace_the_host_check_unless_server_name_is_set() -> None:
    by_sans = transport(peerCertSANs=[{"type": "DNSName", "value": "svc.internal"}])
    by_both = transport(serverName="svc.internal", peerCertURI="spiffe://x")

    assert not build_backend_context(by_sans, "10.0.0.5")[0].check_hostname
    assert build_backend_context(by_both, "10.0.0.5")[0].check_hostname


def test_root_cas_load_from_paths_and_inline_pem(ca: trustme.CA, tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))

    ca_der = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).public_bytes(
        serialization.Encoding.DER
    )

    for root in (str(path), ca.cert_pem.bytes().decode()):
        context, _ = build_backend_context(transport(rootCAs=[root]), "db.internal")
        assert context.get_ca_certs(binary_form=True) == [ca_der]


# --- caching ---------------------------------------------------------------------------------


def test_contexts_are_cached_per_transport_settings() -> None:
    first, _ = build_backend_context(transport(serverName="a.internal"), "10.0.0.1")
    same, _ = build_backend_context(transport(serverName="a.internal"), "10.0.0.2")
    other, _ = build_backend_context(transport(serverName="b.internal"), "10.0.0.1")

    assert first is same
    assert other is not first


# --- errors ----------------------------------------------------------------------------------


def test_unreadable_root_ca_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")

    with pytest.raises(BackendTLSError, match=rf'cannot read rootCAs\[0\] "{missing}": No such'):
        build_backend_context(transport(rootCAs=[missing]), "db.internal")


def test_broken_client_certificate_is_an_error_naming_it(ca: trustme.CA) -> None:
    cert = ca.issue_cert("client")
    broken = {"certFile": cert.cert_chain_pems[0].bytes().decode(), "keyFile": "/missing.key"}

    with pytest.raises(
        BackendTLSError, match=r'^certificates\[0\]: cannot read keyFile "/missing.key"'
    ):
        build_backend_context(transport(certificates=[broken]), "db.internal")


def test_spiffe_and_unknown_san_types_are_errors() -> None:
    with pytest.raises(BackendTLSError, match="spiffe: SPIFFE is not supported"):
        build_backend_context(transport(spiffe={"ids": ["spiffe://x"]}), "db.internal")
    with pytest.raises(BackendTLSError, match=r'peerCertSANs\[0\].type "Email" is not one of'):
        build_backend_context(
            transport(peerCertSANs=[{"type": "Email", "value": "a@b"}]), "db.internal"
        )


# --- peer SANs -------------------------------------------------------------------------------


def test_peer_cert_uri_counts_as_one_more_uri_san() -> None:
    tls = transport(peerCertSANs=[{"type": "DNSName", "value": "a"}], peerCertURI="spiffe://b")

    assert peer_cert_sans(tls) == tuple(sans(("DNSName", "a"), ("URI", "spiffe://b")))
    assert peer_cert_sans(None) == ()


def test_uri_sans_match_case_insensitively() -> None:
    der = san_certificate([x509.UniformResourceIdentifier("spiffe://Example.org/ns/db")])

    assert verify_peer_sans(der, sans(("URI", "SPIFFE://example.org/NS/db"))) is None
    assert verify_peer_sans(der, sans(("URI", "spiffe://example.org/ns/web"))) is not None


def test_dns_name_sans_match_like_go_verify_hostname() -> None:
    der = san_certificate(
        [
            x509.DNSName("db.internal"),
            x509.DNSName("*.svc.internal"),
            x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
        ]
    )

    for accepted in ("DB.internal", "db.internal.", "web.svc.internal", "10.0.0.5"):
        assert verify_peer_sans(der, sans(("DNSName", accepted))) is None, accepted
    for refused in ("a.web.svc.internal", "svc.internal", "10.0.0.6", "internal"):
        assert verify_peer_sans(der, sans(("DNSName", refused))) is not None, refused


def test_one_matching_san_is_enough_and_a_miss_says_what_was_wanted() -> None:
    der = san_certificate([x509.DNSName("db.internal")])
    wanted = sans(("URI", "spiffe://x"), ("DNSName", "db.internal"))

    assert verify_peer_sans(der, wanted) is None
    assert verify_peer_sans(der, wanted[:1]) == (
        "no matching SAN in peer certificate (wanted one of URI:spiffe://x)"
    )


def test_peer_san_check_passes_with_no_sans_and_fails_on_odd_certificates() -> None:
    assert verify_peer_sans(b"anything", []) is None
    assert verify_peer_sans(b"garbage", sans(("URI", "x"))) == (
        "the peer certificate cannot be parsed"
    )
    assert verify_peer_sans(san_certificate(None), sans(("URI", "x"))) == (
        "the peer certificate has no subject alternative names"
    )
