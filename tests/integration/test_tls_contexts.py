"""Real handshakes on 127.0.0.1 against the server and backend contexts the TLS layer builds."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from cryptography import x509

from switchyard.config.dynamic import TLSOptions, TLSSection, TransportTLS
from switchyard.tls.backend import build_backend_context, peer_cert_sans, verify_peer_sans
from switchyard.tls.certificates import CertificateStore, build_certificate_store
from switchyard.tls.options import build_server_context

TIMEOUT = 5


class OneShotServer:
    """Accepts one connection, runs the server side of the handshake, then answers ``ok``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        self.client_certificate: bytes | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        connection.settimeout(TIMEOUT)
        try:
            with self.context.wrap_socket(connection, server_side=True) as tls:
                self.client_certificate = tls.getpeercert(binary_form=True)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            self.error = exc
        finally:
            connection.close()

    def close(self) -> None:
        self._thread.join(TIMEOUT)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[ssl.SSLContext], OneShotServer]]:
    servers: list[OneShotServer] = []

    def start(context: ssl.SSLContext) -> OneShotServer:
        servers.append(OneShotServer(context))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def exchange(
    server: OneShotServer, client: ssl.SSLContext, server_hostname: str | None
) -> ssl.SSLSocket:
    """Handshake with ``server`` and read its ``ok`` (where TLS 1.3 reports a refused client)."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    try:
        tls = client.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    try:
        if tls.recv(2) != b"ok":
            raise ConnectionError("the server closed the connection")
    except BaseException:
        tls.close()
        raise
    return tls


def client_context(ca: trustme.CA | None = None, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        ca.configure_trust(context)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def inline(cert: trustme.LeafCert) -> dict[str, str]:
    return {
        "certFile": cert.cert_chain_pems[0].bytes().decode(),
        "keyFile": cert.private_key_pem.bytes().decode(),
    }


def served_names(tls: ssl.SSLSocket) -> list[str]:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    alt_names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return alt_names.value.get_values_for_type(x509.DNSName)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def store(ca: trustme.CA) -> CertificateStore:
    tls = TLSSection.model_validate(
        {
            "certificates": [
                inline(ca.issue_cert("*.example.com")),
                inline(ca.issue_cert("api.example.com")),
            ]
        }
    )
    return build_certificate_store(tls)[0]


def server_context(store: CertificateStore, **raw: Any) -> ssl.SSLContext:
    return build_server_context(TLSOptions.model_validate(raw), store)


# --- termination -----------------------------------------------------------------------------


def test_certificate_is_chosen_by_sni(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore, ca: trustme.CA
) -> None:
    context = server_context(store)
    expected = {
        "api.example.com": ["api.example.com"],
        "www.example.com": ["*.example.com"],
        "other.test": list(store.default.names),
    }

    for sni, names in expected.items():
        client = client_context(ca if sni != "other.test" else None)
        with exchange(serve(context), client, sni) as tls:
            assert served_names(tls) == names, sni


def test_alpn_follows_the_servers_order(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore
) -> None:
    context = server_context(store)

    with exchange(serve(context), client_context(alpn=["http/1.1", "h2"]), "a.example.com") as tls:
        assert tls.selected_alpn_protocol() == "h2"
    custom = server_context(store, alpnProtocols=["imap", "http/1.1"])
    with exchange(serve(custom), client_context(alpn=["http/1.1", "imap"]), "a.example.com") as tls:
        assert tls.selected_alpn_protocol() == "imap"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_s_client_sees_the_sni_certificate_and_negotiated_alpn(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore
) -> None:
    server = serve(server_context(store))

    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{server.port}",
            "-servername",
            "api.example.com",
            "-alpn",
            "http/1.1,h2",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        # Its exit status depends on how the closing races with the server's; the handshake
        # report is what matters.
        check=False,
        text=True,
        timeout=TIMEOUT,
    )

    assert "ALPN protocol: h2" in result.stdout
    assert _s_client_leaf_names(result.stdout) == ["api.example.com"]


def _s_client_leaf_names(output: str) -> list[str]:
    # s_client prints the leaf PEM; decode it rather than relying on its text layout.
    start = output.index("-----BEGIN CERTIFICATE-----")
    end = output.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    leaf = x509.load_pem_x509_certificate(output[start:end].encode())
    alt_names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return alt_names.get_values_for_type(x509.DNSName)


def _legacy_client(version: ssl.TLSVersion) -> ssl.SSLContext:
    client = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = version
        client.maximum_version = version
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    return client


def test_tls11_is_refused_under_min_tls12_and_accepted_under_min_tls10(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore
) -> None:
    if not ssl.HAS_TLSv1_1:
        pytest.skip("the local OpenSSL cannot speak TLS 1.1")
    client = _legacy_client(ssl.TLSVersion.TLSv1_1)

    with pytest.raises(ssl.SSLError):
        exchange(serve(server_context(store, minVersion="VersionTLS12")), client, "a.example.com")
    with exchange(
        serve(server_context(store, minVersion="VersionTLS10")), client, "a.example.com"
    ) as tls:
        assert tls.version() == "TLSv1.1"


def test_tls12_is_refused_under_min_tls13(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore
) -> None:
    client = _legacy_client(ssl.TLSVersion.TLSv1_2)

    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|protocol version"):
        exchange(serve(server_context(store, minVersion="VersionTLS13")), client, "a.example.com")
    with exchange(serve(server_context(store)), client, "a.example.com") as tls:
        assert tls.version() == "TLSv1.2"


def test_require_and_verify_client_cert_admits_only_certificates_from_the_ca(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore
) -> None:
    client_ca, stranger_ca = trustme.CA(), trustme.CA()
    context = server_context(
        store,
        clientAuth={
            "caFiles": [client_ca.cert_pem.bytes().decode()],
            "clientAuthType": "RequireAndVerifyClientCert",
        },
    )
    # api.example.com moves the handshake to a per-certificate context: it must verify too.
    for sni in ("api.example.com", "other.test"):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            exchange(serve(context), client_context(), sni)
        stranger = client_context()
        stranger_ca.issue_cert("stranger@example.com").configure_cert(stranger)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            exchange(serve(context), stranger, sni)
        member = client_context()
        client_ca.issue_cert("member@example.com").configure_cert(member)
        server = serve(context)
        exchange(server, member, sni).close()
        assert server.client_certificate is not None, sni


def test_sni_strict_refuses_unknown_and_missing_sni(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore, ca: trustme.CA
) -> None:
    context = server_context(store, sniStrict=True)

    for sni in ("other.test", None):
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            exchange(serve(context), client_context(), sni)
    with exchange(serve(context), client_context(ca), "www.example.com") as tls:
        assert served_names(tls) == ["*.example.com"]


# --- backends --------------------------------------------------------------------------------


def backend_server(certificate: trustme.LeafCert) -> tuple[ssl.SSLContext, list[str | None]]:
    """A plain backend context that records the SNI each client sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(context)
    seen: list[str | None] = []
    context.sni_callback = lambda _object, name, _context: seen.append(name)
    return context, seen


def dial(server: OneShotServer, tls: TransportTLS | None, host: str = "localhost") -> ssl.SSLSocket:
    context, server_hostname = build_backend_context(tls, host)
    return exchange(server, context, server_hostname)


def test_backend_is_verified_by_its_host_name_when_no_server_name_is_set(
    serve: Callable[[ssl.SSLContext], OneShotServer], ca: trustme.CA
) -> None:
    context, seen = backend_server(ca.issue_cert("localhost"))
    roots = TransportTLS(root_cas=[ca.cert_pem.bytes().decode()])

    dial(serve(context), roots, "localhost").close()
    assert seen == ["localhost"]
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        dial(serve(context), TransportTLS(root_cas=roots.root_cas, server_name="db.internal"))


def test_backend_dialed_by_ip_is_verified_against_ip_sans_without_sni(
    serve: Callable[[ssl.SSLContext], OneShotServer], ca: trustme.CA
) -> None:
    context, seen = backend_server(ca.issue_cert("127.0.0.1"))

    dial(serve(context), TransportTLS(root_cas=[ca.cert_pem.bytes().decode()]), "127.0.0.1").close()
    assert seen == [None]


def test_insecure_skip_verify_accepts_an_unknown_ca(
    serve: Callable[[ssl.SSLContext], OneShotServer], ca: trustme.CA
) -> None:
    context, _ = backend_server(trustme.CA().issue_cert("elsewhere.test"))

    with pytest.raises(ssl.SSLCertVerificationError):
        dial(serve(context), TransportTLS(root_cas=[ca.cert_pem.bytes().decode()]))
    dial(serve(context), TransportTLS(insecure_skip_verify=True)).close()


def test_backend_presents_its_client_certificate_to_a_server_requiring_one(
    serve: Callable[[ssl.SSLContext], OneShotServer], store: CertificateStore, ca: trustme.CA
) -> None:
    client_ca, other_ca = trustme.CA(), trustme.CA()
    requiring = server_context(store, clientAuth={"caFiles": [client_ca.cert_pem.bytes().decode()]})
    trusting = {"root_cas": [ca.cert_pem.bytes().decode()], "server_name": "api.example.com"}
    accepted = inline(client_ca.issue_cert("proxy@example.com"))
    # Same key type: only the first can be offered, and Go would offer the first.
    ignored = inline(other_ca.issue_cert("proxy@example.com"))

    with pytest.raises((ssl.SSLError, ConnectionError)):
        dial(serve(requiring), TransportTLS.model_validate(trusting))
    server = serve(requiring)
    dial(server, TransportTLS.model_validate({**trusting, "certificates": [accepted, ignored]}))
    assert server.client_certificate is not None
    with pytest.raises((ssl.SSLError, ConnectionError)):
        dial(serve(requiring), TransportTLS.model_validate({**trusting, "certificates": [ignored]}))


def test_peer_sans_are_checked_after_a_handshake_verified_without_host_name(
    serve: Callable[[ssl.SSLContext], OneShotServer], ca: trustme.CA
) -> None:
    context, _ = backend_server(ca.issue_cert("svc.internal"))
    roots = [ca.cert_pem.bytes().decode()]
    for wanted, verdict in (("svc.internal", None), ("web.internal", "no matching SAN")):
        tls = TransportTLS.model_validate(
            {"rootCAs": roots, "peerCertSANs": [{"type": "DNSName", "value": wanted}]}
        )
        with dial(serve(context), tls, "127.0.0.1") as connection:
            der = connection.getpeercert(binary_form=True)
        assert der is not None
        error = verify_peer_sans(der, peer_cert_sans(tls))
        assert error is None if verdict is None else verdict in str(error)
