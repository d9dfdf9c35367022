"""Certificate loading, the default store and selection by SNI."""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID

from switchyard.config.dynamic import TLSSection
from switchyard.tls.certificates import (
    GENERATED_COMMON_NAME,
    CertificateError,
    CertificateStore,
    build_certificate_store,
    generated_default_certificate,
    load_certificate,
    read_file_or_content,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def inline(cert: trustme.LeafCert) -> dict[str, str]:
    return {
        "certFile": cert.cert_chain_pems[0].bytes().decode(),
        "keyFile": cert.private_key_pem.bytes().decode(),
    }


def store_of(*certificates: Mapping[str, object], **stores: object) -> CertificateStore:
    store, problems = build_certificate_store(
        TLSSection.model_validate({"certificates": list(certificates), "stores": stores})
    )
    assert problems == []
    return store


def self_signed(common_name: str, dns_names: list[str]) -> dict[str, str]:
    """A certificate trustme cannot make: any common name, possibly no SAN extension at all."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
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
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "certFile": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "keyFile": key_pem.decode(),
    }


# --- selection -------------------------------------------------------------------------------


def test_exact_name_wins_over_a_wildcard_listed_before_it(ca: trustme.CA) -> None:
    wildcard = inline(ca.issue_cert("*.example.com"))
    exact = inline(ca.issue_cert("api.example.com"))
    store = store_of(wildcard, exact)

    assert store.select("api.example.com") is store.certificates[1]
    assert store.select("www.example.com") is store.certificates[0]


def test_wildcard_covers_exactly_one_extra_label(ca: trustme.CA) -> None:
    store = store_of(inline(ca.issue_cert("*.example.com")))

    assert store.match("a.example.com") is store.certificates[0]
    assert store.match("a.b.example.com") is None
    assert store.match("example.com") is None


def test_selection_ignores_case_on_both_sides() -> None:
    store = store_of(self_signed("ignored", ["Mixed.Example.COM", "*.Wild.Example.COM"]))

    assert store.certificates[0].names == ("mixed.example.com", "*.wild.example.com")
    assert store.match("MIXED.example.com") is store.certificates[0]
    assert store.match("X.WILD.example.com") is store.certificates[0]


def test_unknown_or_missing_sni_gets_the_default_certificate(ca: trustme.CA) -> None:
    store = store_of(inline(ca.issue_cert("a.example.com")))

    for sni in ("b.example.com", "", None):
        assert store.match(sni) is None
        assert store.select(sni) is store.default


def test_first_configured_certificate_wins_a_shared_name(ca: trustme.CA) -> None:
    store = store_of(inline(ca.issue_cert("a.example.com")), inline(ca.issue_cert("a.example.com")))

    assert store.select("a.example.com") is store.certificates[0]


def test_names_come_from_dns_sans_else_from_the_common_name() -> None:
    store = store_of(
        self_signed("cn.example.com", ["san.example.com"]), self_signed("only-cn.example.com", [])
    )

    assert store.certificates[0].names == ("san.example.com",)
    assert store.match("cn.example.com") is None
    assert store.match("only-cn.example.com") is store.certificates[1]


# --- loading ---------------------------------------------------------------------------------


def test_file_paths_and_inline_pem_load_the_same_certificate(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("files.example.com")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))

    from_files = load_certificate(str(cert_path), str(key_path))
    from_content = load_certificate(**_snake(inline(cert)))

    assert from_files.leaf == from_content.leaf
    assert from_files.names == ("files.example.com",)


def _snake(pair: dict[str, str]) -> dict[str, str]:
    return {"cert_file": pair["certFile"], "key_file": pair["keyFile"]}


def test_broken_certificates_are_skipped_and_named_while_the_others_load(
    ca: trustme.CA, tmp_path: Path
) -> None:
    good = inline(ca.issue_cert("good.example.com"))
    other = inline(ca.issue_cert("other.example.com"))
    missing_key = str(tmp_path / "missing.key")
    garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    tls = TLSSection.model_validate(
        {
            "certificates": [
                {"certFile": good["certFile"], "keyFile": missing_key},
                {"certFile": garbage, "keyFile": good["keyFile"]},
                {"certFile": good["certFile"], "keyFile": other["keyFile"]},
                {"certFile": good["certFile"], "keyFile": "-----BEGIN PRIVATE KEY-----\n"},
                good,
            ]
        }
    )

    store, problems = build_certificate_store(tls)

    assert problems == [
        f'tls.certificates[0]: cannot read keyFile "{missing_key}": No such file or directory',
        "tls.certificates[1]: certFile (inline PEM) holds no valid PEM certificate",
        "tls.certificates[2]: keyFile (inline PEM) does not match the certificate in (inline PEM)",
        "tls.certificates[3]: keyFile (inline PEM) holds no valid PEM private key",
    ]
    assert [cert.names for cert in store.certificates] == [("good.example.com",)]


def test_encrypted_and_unusable_keys_are_refused_with_the_reason(ca: trustme.CA) -> None:
    cert = ca.issue_cert("key.example.com")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    dsa_key = dsa.generate_private_key(1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.cert_chain_pems[0].bytes().decode()

    with pytest.raises(CertificateError, match="encrypted private key; give it unencrypted"):
        load_certificate(cert_pem, encrypted.decode())
    with pytest.raises(CertificateError, match="kind of key TLS servers cannot use"):
        load_certificate(cert_pem, dsa_key.decode())


def test_read_file_or_content_reports_empty_values_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="^keyFile is empty$"):
        read_file_or_content("", "keyFile")
    with pytest.raises(
        CertificateError, match=f'cannot read certFile "{tmp_path}": Is a directory'
    ):
        read_file_or_content(str(tmp_path), "certFile")
    assert read_file_or_content("x -----BEGIN y", "certFile") == b"x -----BEGIN y"


def test_certificate_outside_the_default_store_is_ignored_with_a_message(ca: trustme.CA) -> None:
    elsewhere = {**inline(ca.issue_cert("elsewhere.example.com")), "stores": ["internal"]}
    both = {**inline(ca.issue_cert("both.example.com")), "stores": ["internal", "default"]}
    tls = TLSSection.model_validate(
        {"certificates": [elsewhere, both], "stores": {"internal": {}, "default": {}}}
    )

    store, problems = build_certificate_store(tls)

    assert [cert.names for cert in store.certificates] == [("both.example.com",)]
    assert problems == [
        (
            "tls.certificates[0]: stores internal do not include 'default', the only store "
            "routers use; certificate ignored: add 'default' to its stores or drop the stores key"
        ),
        ("tls.stores.internal: only the 'default' store is used, by Traefik's routers as by "
         "Switchyard's; store ignored: move its settings to tls.stores.default or remove it"),
    ]


# --- the default certificate -----------------------------------------------------------------


def test_generated_default_certificate_is_made_once_like_traefiks() -> None:
    first = store_of().default
    second = store_of().default
    leaf = first.leaf

    assert first is second is generated_default_certificate()
    assert (
        leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == GENERATED_COMMON_NAME
    )
    assert leaf.issuer == leaf.subject
    public_key = leaf.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=365)
    assert len(first.names) == 1 and first.names[0].endswith(".traefik.default")


def test_configured_default_certificate_serves_unmatched_names(ca: trustme.CA) -> None:
    configured = ca.issue_cert("fallback.example.com")
    store = store_of(default={"defaultCertificate": inline(configured)})

    assert store.select("unknown.example.com").names == ("fallback.example.com",)


def test_broken_default_certificate_falls_back_to_the_generated_one(tmp_path: Path) -> None:
    tls = TLSSection.model_validate(
        {"stores": {"default": {"defaultCertificate": {"certFile": "/nope.crt", "keyFile": "k"}}}}
    )

    store, problems = build_certificate_store(tls)

    assert store.default is generated_default_certificate()
    assert problems == [
        (
            'tls.stores.default.defaultCertificate: cannot read certFile "/nope.crt": No such '
            "file or directory; serving the generated default certificate"
        )
    ]


def test_default_generated_cert_needs_an_acme_resolver_we_do_not_have() -> None:
    tls = TLSSection.model_validate(
        {"stores": {"default": {"defaultGeneratedCert": {"resolver": "le"}}}}
    )

    store, problems = build_certificate_store(tls)

    assert store.default is generated_default_certificate()
    assert problems == [
        (
            "tls.stores.default.defaultGeneratedCert: is not implemented by Switchyard (the "
            "default certificate is not obtained from a resolver); serving the generated "
            "self-signed default certificate: set defaultCertificate to a certificate file instead"
        )
    ]


# --- key material into contexts --------------------------------------------------------------


def _serves(context: ssl.SSLContext, ca: trustme.CA, server_name: str) -> str:
    """Run an in-memory handshake against ``context``; the name in the certificate it served."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_side = context.wrap_bio(to_server, to_client, server_side=True)
    client_side = client.wrap_bio(to_client, to_server, server_hostname=server_name)
    for _ in range(4):
        for side in (client_side, server_side):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
    names = dict(client_side.getpeercert()["subjectAltName"])  # type: ignore[arg-type,index]
    return str(names["DNS"])


def test_key_material_loads_from_memory(ca: trustme.CA) -> None:
    certificate = load_certificate(**_snake(inline(ca.issue_cert("memory.example.com"))))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

    certificate.load_into(context)

    assert _serves(context, ca, "memory.example.com") == "memory.example.com"


def test_key_material_loads_through_a_private_file_removed_at_once_without_memfd(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = load_certificate(**_snake(inline(ca.issue_cert("private.example.com"))))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording_open(path: str, flags: int, mode: int = 0o777, **kwargs: int | None) -> int:
        if flags & os.O_CREAT:
            opened.append((os.path.basename(path), os.stat(os.path.dirname(path)).st_mode, mode))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(os, "open", recording_open)

    certificate.load_into(context)

    assert [(name, oct(dir_mode & 0o777), oct(mode)) for name, dir_mode, mode in opened] == [
        ("chain.pem", "0o700", "0o600")
    ]
    assert list(tmp_path.iterdir()) == []
    assert _serves(context, ca, "private.example.com") == "private.example.com"
