"""Certificates of the dynamic ``tls`` section: loading, the default store, selection by SNI."""

from __future__ import annotations

import functools
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from switchyard.config.dynamic import Store, TLSSection

__all__ = [
    "DEFAULT_STORE",
    "GENERATED_COMMON_NAME",
    "CertificateError",
    "CertificateStore",
    "LoadedCertificate",
    "build_certificate_store",
    "generated_default_certificate",
    "load_certificate",
    "pem_bundle",
    "read_certificates",
    "read_file_or_content",
]

#: The only certificate store routers use, in Traefik as here.
DEFAULT_STORE = "default"
#: Subject of the self-signed certificate served when no default certificate is configured;
#: Traefik's own text, so monitoring that looks for it keeps working.
GENERATED_COMMON_NAME = "TRAEFIK DEFAULT CERT"

_PEM_MARKER = "-----BEGIN"
# The key types Go's crypto/tls can serve.
_ServableKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_PRIVATE_FILE_NAME = "chain.pem"


class CertificateError(ValueError):
    """A certificate, key or CA bundle that cannot be used; the message says which and why."""


def read_file_or_content(value: str, name: str) -> bytes:
    """Read a Traefik "file or content" value: inline PEM as given, anything else as a file path.

    Traefik takes the value as a path when a file of that name exists and as content otherwise, so
    a mistyped path only shows up as a PEM parse error. Deciding on the PEM marker instead lets a
    missing file be reported as what it is. ``name`` is the option, for the message.
    """
    if _PEM_MARKER in value:
        return value.encode("utf-8")
    if not value:
        raise CertificateError(f"{name} is empty")
    try:
        with open(value, "rb") as source:
            return source.read()
    except OSError as exc:
        raise CertificateError(f'cannot read {name} "{value}": {exc.strerror or exc}') from None


def read_certificates(value: str, name: str) -> list[x509.Certificate]:
    """The PEM certificates of a file-or-content value (a chain, a CA bundle).

    Raises CertificateError when the value cannot be read or holds no valid PEM certificate.
    """
    data = read_file_or_content(value, name)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(f"{name} {_label(value)} holds no valid PEM certificate") from None


def pem_bundle(certificates: Iterable[x509.Certificate]) -> str:
    """``certificates`` as one PEM text, as ``SSLContext.load_verify_locations(cadata=)`` takes."""
    return "".join(
        certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        for certificate in certificates
    )


@dataclass(frozen=True, eq=False)
class LoadedCertificate:
    """A validated certificate chain and its key, ready to load into ``ssl.SSLContext`` objects.

    ``names`` are the lower-cased DNS names it serves: its DNS subject alternative names, or its
    common name when it has none. Equality is identity, so it can key per-certificate caches.
    """

    names: tuple[str, ...]
    leaf: x509.Certificate
    # The chain then the unencrypted key, re-serialised from what was validated.
    pem: bytes = field(repr=False)

    def load_into(self, context: ssl.SSLContext) -> None:
        """Install this certificate and key in ``context``, passing them through memory.

        ``load_cert_chain`` only reads files: on Linux it reads an anonymous memory file, so the
        key never exists on a filesystem; elsewhere a private file lives for the one call.
        """
        _load_pem_chain(context, self.pem)


def _load_pem_chain(context: ssl.SSLContext, pem: bytes) -> None:
    # A memfd opened through /proc and closed at once: nothing is left behind, whatever happens
    # to the process, and no other user can open it.
    memory_file = _memory_file(pem)
    if memory_file is not None:
        try:
            path = f"/proc/self/fd/{memory_file}"
            if os.path.exists(path):
                context.load_cert_chain(path)
                return
        finally:
            os.close(memory_file)
    _load_via_private_file(context, pem)


def _memory_file(pem: bytes) -> int | None:
    try:
        descriptor = os.memfd_create("switchyard-certificate", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None
    try:
        view = memoryview(pem)
        while view:
            view = view[os.write(descriptor, view) :]
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def _load_via_private_file(context: ssl.SSLContext, pem: bytes) -> None:
    # Without memfd (or /proc): a 0700 directory of our own holding a 0600 file for the length of
    # one load_cert_chain call, then both removed.
    with tempfile.TemporaryDirectory(prefix="switchyard-") as directory:
        path = os.path.join(directory, _PRIVATE_FILE_NAME)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as private_file:
            private_file.write(pem)
        context.load_cert_chain(path)


def load_certificate(cert_file: str, key_file: str) -> LoadedCertificate:
    """Load and check a ``certFile``/``keyFile`` pair, each a file path or inline PEM.

    Raises CertificateError naming the file and the problem: unreadable, no PEM certificate, no
    usable private key (encrypted keys are refused, as Go's tls.X509KeyPair does), or a key that
    does not belong to the certificate.
    """
    chain = read_certificates(cert_file, "certFile")
    key_pem = read_file_or_content(key_file, "keyFile")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateError(
            f"keyFile {_label(key_file)} holds an encrypted private key; give it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(
            f"keyFile {_label(key_file)} holds no valid PEM private key"
        ) from None
    if not isinstance(key, _ServableKey):
        raise CertificateError(
            f"keyFile {_label(key_file)} holds a kind of key TLS servers cannot use "
            "(use RSA, ECDSA or Ed25519)"
        )
    leaf = chain[0]
    if _public_key_der(leaf) != _public_key_der(key):
        raise CertificateError(
            f"keyFile {_label(key_file)} does not match the certificate in {_label(cert_file)}"
        )
    try:
        names = _served_names(leaf)
    except ValueError as exc:
        raise CertificateError(f"certFile {_label(cert_file)}: {exc}") from None
    return _loaded(names, chain, key)


def _label(value: str) -> str:
    return "(inline PEM)" if _PEM_MARKER in value else f'"{value}"'


def _public_key_der(source: x509.Certificate | _ServableKey) -> bytes:
    return source.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _served_names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        alt_names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = alt_names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            attribute.value
            for attribute in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if isinstance(attribute.value, str)
        ]
    # A trailing dot names the same host; clients never send one in SNI.
    return tuple(dict.fromkeys(name.lower().rstrip(".") for name in names if name.strip(".")))


def _loaded(
    names: tuple[str, ...], chain: list[x509.Certificate], key: _ServableKey
) -> LoadedCertificate:
    pem = pem_bundle(chain).encode("ascii") + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return LoadedCertificate(names=names, leaf=chain[0], pem=pem)


@functools.cache
def generated_default_certificate() -> LoadedCertificate:
    """The self-signed certificate served when no default certificate is configured.

    Made once per process, like Traefik's: RSA 2048, valid one year, subject
    ``TRAEFIK DEFAULT CERT`` and one random ``<hex>.<hex>.traefik.default`` DNS name.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GENERATED_COMMON_NAME)])
    dns_name = f"{secrets.token_hex(16)}.{secrets.token_hex(16)}.traefik.default"
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _loaded((dns_name,), [leaf], key)


class CertificateStore:
    """Traefik's ``default`` certificate store, indexed for selection by SNI.

    When several certificates serve the same name, the first one configured wins.
    """

    def __init__(
        self, certificates: Iterable[LoadedCertificate], default: LoadedCertificate
    ) -> None:
        self.certificates = tuple(certificates)
        self.default = default
        self._exact: dict[str, LoadedCertificate] = {}
        self._wildcard: dict[str, LoadedCertificate] = {}  # keyed by the part after "*."
        for certificate in self.certificates:
            for name in certificate.names:
                if name.startswith("*."):
                    self._wildcard.setdefault(name[2:], certificate)
                else:
                    self._exact.setdefault(name, certificate)

    def match(self, sni: str | None) -> LoadedCertificate | None:
        """The configured certificate for ``sni``, or None (the case strict SNI refuses).

        An exact name wins over a wildcard; ``*.example.com`` covers exactly one more label.
        Names compare case-insensitively.
        """
        if not sni:
            return None
        name = sni.lower()
        found = self._exact.get(name)
        if found is None:
            _, dot, parent = name.partition(".")
            if dot:
                found = self._wildcard.get(parent)
        return found

    def select(self, sni: str | None) -> LoadedCertificate:
        """The certificate to serve for ``sni``: its match, else the default certificate."""
        found = self.match(sni)
        return self.default if found is None else found


def build_certificate_store(tls: TLSSection) -> tuple[CertificateStore, list[str]]:
    """Build the default store from ``tls.certificates`` and ``tls.stores.default``.

    A certificate with no ``stores`` goes to the default store. A broken certificate is left out
    and reported; the others still load. Without a usable ``defaultCertificate`` the generated
    one is served. Returns the store and the problems found, each naming its element, e.g.
    ``tls.certificates[2]: cannot read keyFile "/x.key": No such file or directory``.
    """
    problems: list[str] = []
    loaded: list[LoadedCertificate] = []
    for index, certificate in enumerate(tls.certificates):
        where = f"tls.certificates[{index}]"
        stores = certificate.stores or [DEFAULT_STORE]
        if DEFAULT_STORE not in stores:
            problems.append(
                f"{where}: stores {', '.join(stores)} do not include {DEFAULT_STORE!r}, the only "
                f"store routers use; certificate ignored: add {DEFAULT_STORE!r} to its stores or "
                "drop the stores key"
            )
            continue
        try:
            loaded.append(load_certificate(certificate.cert_file, certificate.key_file))
        except CertificateError as exc:
            problems.append(f"{where}: {exc}")
    for name in tls.stores:
        if name != DEFAULT_STORE:
            problems.append(
                f"tls.stores.{name}: only the {DEFAULT_STORE!r} store is used, by Traefik's "
                f"routers as by Switchyard's; store ignored: move its settings to "
                f"tls.stores.{DEFAULT_STORE} or remove it"
            )
    default = _default_certificate(tls.stores.get(DEFAULT_STORE), problems)
    return CertificateStore(loaded, default), problems


def _default_certificate(store: Store | None, problems: list[str]) -> LoadedCertificate:
    where = f"tls.stores.{DEFAULT_STORE}"
    if store is not None and store.default_certificate is not None:
        configured = store.default_certificate
        try:
            return load_certificate(configured.cert_file, configured.key_file)
        except CertificateError as exc:
            # Traefik would then have no default certificate and fail such handshakes.
            problems.append(
                f"{where}.defaultCertificate: {exc}; serving the generated default certificate"
            )
    elif store is not None and store.default_generated_cert is not None:
        problems.append(
            f"{where}.defaultGeneratedCert: is not implemented by Switchyard (the default "
            "certificate is not obtained from a resolver); serving the generated self-signed "
            "default certificate: set defaultCertificate to a certificate file instead"
        )
    return generated_default_certificate()
