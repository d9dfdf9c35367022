"""Client contexts for dialing ``servers[].tls`` backends with a servers transport's TLS settings."""

from __future__ import annotations

import functools
import ipaddress
import ssl
from collections.abc import Sequence

from cryptography import x509

from switchyard.config.dynamic import PeerCertSAN, TransportTLS
from switchyard.tls.certificates import (
    CertificateError,
    load_certificate,
    pem_bundle,
    read_certificates,
)

__all__ = [
    "PEER_SAN_TYPES",
    "BackendTLSError",
    "build_backend_context",
    "peer_cert_sans",
    "verify_peer_sans",
]

#: The ``peerCertSANs[].type`` values Traefik knows.
PEER_SAN_TYPES = ("DNSName", "URI")


class BackendTLSError(ValueError):
    """A servers transport TLS setting that cannot be applied; the message names the field."""


def build_backend_context(
    tls: TransportTLS | None, server_host: str, alpn: tuple[str, ...] = ()
) -> tuple[ssl.SSLContext, str | None]:
    """The client context for a TLS backend and the ``server_hostname`` to pass with it.

    ``server_host`` is the host part of the server's address (IPv6 with or without brackets).
    With ``serverName`` set, it is the SNI and the name verified, as in Traefik. Without it, the
    server's host is used: Traefik fails every such handshake (docs/compatibility.md); verifying the address we
    dial is the safe reading of what the user asked for. Python sends no SNI for an IP address
    and checks the certificate's IP SANs instead.

    ``insecureSkipVerify`` turns verification off, except that with ``peerCertSANs`` (or
    ``peerCertURI``) the chain is still verified, as Traefik's callback does; those SANs then
    replace the host name check unless ``serverName`` is set. The caller checks them after the
    handshake with verify_peer_sans(). Without ``rootCAs`` the system trust store is used.
    ``certificates`` are offered to servers that ask for one; of several with the same key type,
    the first wins, as Go picks the first suitable one.

    ``alpn`` is the protocols offered (``("h2", "http/1.1")`` where HTTP/2 may be chosen).
    Contexts are cached per transport settings, so calling this per connection is cheap; files
    named in the settings are read when a context is first built. Raises BackendTLSError.
    """
    context = _context_for_transport(tls.model_dump_json() if tls is not None else "", alpn)
    server_name = tls.server_name if tls is not None and tls.server_name else None
    host = server_host.removeprefix("[").removesuffix("]")
    return context, server_name or host or None


@functools.lru_cache(maxsize=256)
def _context_for_transport(settings_json: str, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    # Keyed on the model's JSON: the frozen model holds lists, so it is not hashable itself.
    tls = TransportTLS.model_validate_json(settings_json) if settings_json else TransportTLS()
    if tls.spiffe is not None:
        raise BackendTLSError(
            "spiffe: SPIFFE is not supported; use rootCAs with peerCertSANs for URI identities"
        )
    sans = peer_cert_sans(tls)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    context.check_hostname = not tls.insecure_skip_verify and (bool(tls.server_name) or not sans)
    if tls.insecure_skip_verify and not sans:
        context.verify_mode = ssl.CERT_NONE
    elif tls.root_cas:
        context.load_verify_locations(cadata=_root_cas(tls.root_cas))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    # A later load of the same key type replaces an earlier one, so load in reverse.
    for index in reversed(range(len(tls.certificates))):
        certificate = tls.certificates[index]
        try:
            load_certificate(certificate.cert_file, certificate.key_file).load_into(context)
        except CertificateError as exc:
            raise BackendTLSError(f"certificates[{index}]: {exc}") from None
    return context


def _root_cas(values: Sequence[str]) -> str:
    try:
        return "".join(
            pem_bundle(read_certificates(value, f"rootCAs[{index}]"))
            for index, value in enumerate(values)
        )
    except CertificateError as exc:
        raise BackendTLSError(str(exc)) from None


def peer_cert_sans(tls: TransportTLS | None) -> tuple[PeerCertSAN, ...]:
    """The SANs a backend certificate must show one of: ``peerCertSANs`` plus ``peerCertURI``.

    The deprecated ``peerCertURI`` counts as one more URI SAN, as Traefik folds it. Raises
    BackendTLSError for a type other than DNSName or URI.
    """
    if tls is None:
        return ()
    sans = list(tls.peer_cert_sans)
    if tls.peer_cert_uri:
        sans.append(PeerCertSAN(type="URI", value=tls.peer_cert_uri))
    for index, san in enumerate(sans):
        if san.type not in PEER_SAN_TYPES:
            raise BackendTLSError(
                f'peerCertSANs[{index}].type "{san.type}" is not one of {", ".join(PEER_SAN_TYPES)}'
            )
    return tuple(sans)


def verify_peer_sans(cert_der: bytes, sans: Sequence[PeerCertSAN]) -> str | None:
    """Check a backend's certificate (DER, as ``getpeercert(True)`` gives) against ``sans``.

    One match is enough, as in Traefik: a URI compares case-insensitively with the certificate's
    URI SANs; a DNSName is matched like Go's VerifyHostname (IP SANs for an address, otherwise DNS
    SANs, ``*.`` covering exactly one label). Returns None when it passes (or ``sans`` is
    empty), else the reason to close the connection.
    """
    if not sans:
        return None
    try:
        certificate = x509.load_der_x509_certificate(cert_der)
        alt_names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return "the peer certificate has no subject alternative names"
    except ValueError:
        return "the peer certificate cannot be parsed"
    uris = [uri.lower() for uri in alt_names.get_values_for_type(x509.UniformResourceIdentifier)]
    dns_names = alt_names.get_values_for_type(x509.DNSName)
    addresses = alt_names.get_values_for_type(x509.IPAddress)
    for san in sans:
        if san.type == "URI" and san.value.lower() in uris:
            return None
        if san.type == "DNSName" and _host_matches(san.value, dns_names, addresses):
            return None
    wanted = ", ".join(f"{san.type}:{san.value}" for san in sans)
    return f"no matching SAN in peer certificate (wanted one of {wanted})"


def _host_matches(host: str, dns_names: Sequence[str], addresses: Sequence[object]) -> bool:
    try:
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        name = host.lower().rstrip(".")
        return any(_dns_name_matches(pattern.lower().rstrip("."), name) for pattern in dns_names)
    return address in addresses


def _dns_name_matches(pattern: str, name: str) -> bool:
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    label, dot, rest = name.partition(".")
    return bool(label) and bool(dot) and rest == pattern[2:]
