"""`passTLSClientCert`: hands the client's TLS certificate, or chosen parts of it, to the backend.

Only on a connection where Switchyard terminated TLS and the client sent a certificate (ask for
one with ``tls.options.<name>.clientAuth``); otherwise the request passes unchanged (the entry
point already dropped any such field a client sent itself).

* ``pem: true`` sets ``X-Forwarded-Tls-Client-Cert`` to the certificates as PEM without the
  BEGIN/END lines and line breaks (that is, the base64 of each DER), comma-separated.
* ``info`` sets ``X-Forwarded-Tls-Client-Cert-Info`` to, per certificate (comma-separated),
  the chosen fields joined by ``;``: ``Subject="..."``, ``Issuer="..."``,
  ``SerialNumber="..."``, ``NB="<unix>"``, ``NA="<unix>"``, ``SAN="..."``, each distinguished
  name written as ``DC=..,C=..,ST=..,L=..,O=..,OU=..,SN=..,CN=..`` with only the chosen parts;
  the whole value query-escaped as Go's url.QueryEscape does.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from cryptography import x509
from cryptography.x509.oid import NameOID

from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["PassTLSClientCertOptions", "build", "certificate_info", "certificate_pem"]

CERT_FIELD = b"X-Forwarded-Tls-Client-Cert"
INFO_FIELD = b"X-Forwarded-Tls-Client-Cert-Info"


class IssuerOptions(TraefikModel):
    country: bool = False
    province: bool = False
    locality: bool = False
    organization: bool = False
    common_name: bool = False
    serial_number: bool = False
    domain_component: bool = False


class SubjectOptions(IssuerOptions):
    organizational_unit: bool = False


class InfoOptions(TraefikModel):
    not_after: bool = False
    not_before: bool = False
    sans: bool = False
    serial_number: bool = False
    subject: SubjectOptions | None = None
    issuer: IssuerOptions | None = None


class PassTLSClientCertOptions(TraefikModel):
    pem: bool = False
    info: InfoOptions | None = None


# The single-valued parts Go keeps the last of; the others are written once per value, in order.
_LISTED = (("C", NameOID.COUNTRY_NAME, "country"),
           ("ST", NameOID.STATE_OR_PROVINCE_NAME, "province"),
           ("L", NameOID.LOCALITY_NAME, "locality"),
           ("O", NameOID.ORGANIZATION_NAME, "organization"),
           ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME, "organizational_unit"))
_SINGLE = (("SN", NameOID.SERIAL_NUMBER, "serial_number"),
           ("CN", NameOID.COMMON_NAME, "common_name"))


def _distinguished_name(name: x509.Name, options: IssuerOptions) -> str:
    """Go's ``Key=value,`` run for the chosen parts of a name, without the last comma."""
    attributes = [(attribute.oid, attribute.value) for attribute in name]
    parts: list[str] = []
    if options.domain_component:
        parts += (f"DC={value!s}" for oid, value in attributes if oid == NameOID.DOMAIN_COMPONENT)
    for key, oid, option in _LISTED:
        if getattr(options, option, False):
            parts += (f"{key}={value}" for found, value in attributes
                      if found == oid and isinstance(value, str) and value)
    for key, oid, option in _SINGLE:
        if getattr(options, option):
            values = [value for found, value in attributes if found == oid and isinstance(value, str)]
            if values and values[-1]:
                parts.append(f"{key}={values[-1]}")
    return ",".join(parts)


def _sans(certificate: x509.Certificate) -> list[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    found: list[str] = list(names.get_values_for_type(x509.DNSName))
    found += names.get_values_for_type(x509.RFC822Name)
    for address in names.get_values_for_type(x509.IPAddress):
        # Go prints an IPv4-mapped IPv6 address in its dotted IPv4 form.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            found.append(str(address.ipv4_mapped))
        else:
            found.append(str(address))
    found += names.get_values_for_type(x509.UniformResourceIdentifier)
    return found


def _one_info(der: bytes, options: InfoOptions) -> str:
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return ""
    values = []
    if options.subject is not None:
        subject = _distinguished_name(certificate.subject, options.subject)
        if subject:
            values.append(f'Subject="{subject}"')
    if options.issuer is not None:
        issuer = _distinguished_name(certificate.issuer, options.issuer)
        if issuer:
            values.append(f'Issuer="{issuer}"')
    if options.serial_number:
        values.append(f'SerialNumber="{certificate.serial_number}"')
    if options.not_before:
        values.append(f'NB="{int(certificate.not_valid_before_utc.timestamp())}"')
    if options.not_after:
        values.append(f'NA="{int(certificate.not_valid_after_utc.timestamp())}"')
    if options.sans:
        sans = _sans(certificate)
        if sans:
            values.append(f'SAN="{",".join(sans)}"')
    return ";".join(values)


def certificate_pem(chain: tuple[bytes, ...]) -> bytes:
    """The X-Forwarded-Tls-Client-Cert value for a chain of DER certificates."""
    return b",".join(base64.b64encode(der) for der in chain)


def certificate_info(chain: tuple[bytes, ...], options: InfoOptions) -> bytes:
    """The X-Forwarded-Tls-Client-Cert-Info value for a chain of DER certificates."""
    text = ",".join(_one_info(der, options) for der in chain)
    return quote_plus(text, safe="~").encode("ascii")


class PassTLSClientCert:
    """Handler: sets the certificate fields from the connection's client certificates."""

    __slots__ = ("info", "next", "pem")

    def __init__(self, pem: bool, info: InfoOptions | None, next_handler: Handler) -> None:
        self.pem = pem
        self.info = info
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        chain = exchange.info.tls_peer_certificates
        if chain:
            headers = exchange.request.headers
            if self.pem:
                headers.set(CERT_FIELD.lower(), certificate_pem(chain), CERT_FIELD)
            if self.info is not None:
                headers.set(INFO_FIELD.lower(), certificate_info(chain, self.info), INFO_FIELD)
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(PassTLSClientCertOptions, options)
    return lambda next_handler: PassTLSClientCert(config.pem, config.info, next_handler)
